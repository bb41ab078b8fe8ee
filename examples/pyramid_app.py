"""Pyramid: notes kept in ``request.session``, a CSRF-checked form and flash queues.

Run it and open http://127.0.0.1:8000/::

    python examples/pyramid_app.py

``config.include("wsgisession.contrib.pyramid")`` reads the ``wsgisession.*``
settings; Pyramid checks the form's ``csrf_token`` against the session's
token.  The store is the URL in ``WSGISESSION_STORE`` (default ``memory``).
"""

from __future__ import annotations

import html
import os
from typing import Any, Dict, Optional

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response

PAGE = """<!doctype html>
<title>wsgisession with Pyramid</title>
{messages}
<ul>{notes}</ul>
<form method="post" action="/notes">
  <input type="hidden" name="csrf_token" value="{csrf_token}">
  <input name="text"> <button>Add a note</button>
</form>
"""


def show_notes(request: Request) -> Response:
    session = request.session
    messages = [f'<p class="error">{html.escape(text)}</p>' for text in session.pop_flash("error")]
    messages += [f"<p>{html.escape(text)}</p>" for text in session.pop_flash()]
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in session.get("notes", []))
    body = PAGE.format(messages="".join(messages), notes=notes, csrf_token=session.get_csrf_token())
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
        "wsgisession.store": os.environ.get("WSGISESSION_STORE", "memory"),
        "wsgisession.expire_after": "28800",
        "wsgisession.cookie_secure": "auto",
        **(settings or {}),
    }
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
