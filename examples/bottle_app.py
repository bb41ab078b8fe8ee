"""Bottle: a shopping cart kept in the session, with read-once notices.

Run it and open http://127.0.0.1:8000/::

    python examples/bottle_app.py
    WSGISESSION_STORE=cookie python examples/bottle_app.py

Routes that take a ``session`` argument get the request's session from
``SessionPlugin``; the app served is the Bottle app wrapped in
``SessionMiddleware``.  The store is the URL in ``WSGISESSION_STORE``
(default ``memory``) and the cookie store's secret ``WSGISESSION_SECRET_KEY``
(see ``examples/settings.py``).  On every store that can, the cart is changed
under the per-session lock (``lock=True``): two tabs adding items at once
keep them all.
"""

from __future__ import annotations

import html
import os
from typing import Any, Optional

import bottle

from wsgisession import Session, SessionMiddleware
from wsgisession.contrib import store_from_url
from wsgisession.contrib.bottle import SessionPlugin
from wsgisession.store import Store

if __package__:
    from . import settings
else:  # run as a script (python examples/bottle_app.py): this folder is on sys.path
    import settings  # type: ignore[no-redef]

PAGE = """<!doctype html>
<title>wsgisession with Bottle</title>
<p>{notice}</p>
<ul>{items}</ul>
<form method="post" action="/cart"><input name="item"> <button>Add</button></form>
<form method="post" action="/cart/empty"><button>Empty the cart</button></form>
{warning}"""


def create_app(store: Optional[Store] = None, **middleware_options: Any) -> SessionMiddleware:
    """The WSGI app: a Bottle app in SessionMiddleware (``store`` defaults to ``WSGISESSION_STORE``)."""
    if store is None:
        url = settings.store_url()
        secret_key = settings.secret_key() if settings.is_cookie_store(url) else None
        store = store_from_url(url, secret_key=secret_key)
    # The cart is read, changed and written back whole: without the lock two
    # requests at once each add to the cart they read and one item is lost.
    # The cookie store can not lock, and the page says so.
    can_lock = settings.can_lock(store)
    middleware_options.setdefault("lock", can_lock)
    app = bottle.Bottle()
    # Kept in the app's config: Bottle's plugin lookup loops forever on a
    # route function that closes over a variable that is not a function.
    app.config["cart.warning"] = "" if can_lock else settings.LOST_CHANGES_NOTICE
    app.install(SessionPlugin())

    @app.get("/")
    def show_cart(session: Session) -> str:
        notice = session.get("notice", "")  # a flash value: shown once
        items = "".join(f"<li>{html.escape(item)}</li>" for item in session.get("cart", []))
        warning = bottle.request.app.config["cart.warning"]
        warning = f'<p class="warning">{html.escape(warning)}</p>\n' if warning else ""
        return PAGE.format(notice=html.escape(notice), items=items, warning=warning)

    @app.get("/cart.json")
    def cart_as_json(session: Session) -> Any:
        return {"cart": session.get("cart", [])}

    @app.post("/cart")
    def add_item(session: Session) -> None:
        item = bottle.request.forms.getunicode("item", "").strip()
        if item:
            session.setdefault("cart", []).append(item)  # changed in place: saved all the same
            session.flash("notice", f"Added {item}.")
        else:
            session.flash("notice", "Name the item to add.")
        bottle.redirect("/", 303)

    @app.post("/cart/empty")
    def empty_cart(session: Session) -> None:
        session.pop("cart", None)
        session.flash("notice", "The cart is empty.")
        bottle.redirect("/", 303)

    return SessionMiddleware(app, store, **middleware_options)


app = create_app()

if __name__ == "__main__":
    from werkzeug.serving import run_simple

    run_simple("127.0.0.1", int(os.environ.get("PORT", "8000")), app, threaded=True)
