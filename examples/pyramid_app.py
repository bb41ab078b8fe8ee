"""Pyramid: notes kept in ``request.session``, a CSRF-checked form and flash queues.

Run it and open http://127.0.0.1:8000/::

    python examples/pyramid_app.py
    WSGISESSION_STORE=cookie python examples/pyramid_app.py

``config.include("wsgisession.contrib.pyramid")`` reads the ``wsgisession.*``
settings; Pyramid checks the form's ``csrf_token`` against the session's
token.  The store is the URL in ``WSGISESSION_STORE`` (default ``memory``)
and the cookie store's secret ``WSGISESSION_SECRET_KEY`` (see
``examples/settings.py``).  On every store that can, the notes are changed
under the per-session lock (``wsgisession.lock``): two tabs adding notes at
once keep them all.
"""

from __future__ import annotations

import html
import os
from typing import Any, Dict, Optional

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response

from wsgisession.contrib import REGISTRY_KEY

if __package__:
    from . import settings as example_settings
else:  # run as a script (python examples/pyramid_app.py): this folder is on sys.path
    import settings as example_settings  # type: ignore[no-redef]

PAGE = """<!doctype html>
<title>wsgisession with Pyramid</title>
{messages}
<ul>{notes}</ul>
<form method="post" action="/notes">
  <input type="hidden" name="csrf_token" value="{csrf_token}">
  <input name="text"> <button>Add a note</button>
</form>
{warning}"""


def show_notes(request: Request) -> Response:
    session = request.session
    messages = [f'<p class="error">{html.escape(text)}</p>' for text in session.pop_flash("error")]
    messages += [f"<p>{html.escape(text)}</p>" for text in session.pop_flash()]
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in session.get("notes", []))
    warning = ""
    if request.registry[REGISTRY_KEY].lock_timeout is None:  # no lock=True: the store can not lock
        warning = f'<p class="warning">{html.escape(example_settings.LOST_CHANGES_NOTICE)}</p>\n'
    body = PAGE.format(messages="".join(messages), notes=notes, csrf_token=session.get_csrf_token(), warning=warning)
    return Response(body)


def add_note(request: Request) -> HTTPSeeOther:
    text = request.POST.get("text", "").strip()
    if text:
        request.session.setdefault("notes", []).append(text)
        request.session.flash("Saved.")
    else:
        request.session.flash("Write something first.", queue="error")
    return HTTPSeeOther(location="/")


def create_app(settings: Optional[Dict[str, Any]] = None) -> Any:
    """The WSGI app; ``settings`` add to or override the defaults below."""
    settings = {
        "wsgisession.store": example_settings.store_url(),
        "wsgisession.expire_after": "28800",
        "wsgisession.cookie_secure": "auto",
        **(settings or {}),
    }
    store = settings["wsgisession.store"]
    if example_settings.is_cookie_store(store):
        settings.setdefault("wsgisession.secret_key", example_settings.secret_key())
    # The notes are read, changed and written back whole: without the lock two
    # requests at once each add to the list they read and one note is lost.
    # The cookie store can not lock, and the page says so.
    settings.setdefault("wsgisession.lock", example_settings.can_lock(store))
    with Configurator(settings=settings) as config:
        config.include("wsgisession.contrib.pyramid")
        config.set_default_csrf_options(require_csrf=True)  # unsafe methods need the token
        config.add_route("notes", "/")
        config.add_view(show_notes, route_name="notes", request_method="GET")
        config.add_route("add_note", "/notes")
        config.add_view(add_note, route_name="add_note", request_method="POST")
        return config.make_wsgi_app()


app = create_app()

if __name__ == "__main__":
    from werkzeug.serving import run_simple

    run_simple("127.0.0.1", int(os.environ.get("PORT", "8000")), app, threaded=True)
