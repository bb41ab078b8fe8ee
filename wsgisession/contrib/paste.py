"""PasteDeploy filter: SessionMiddleware configured in an ini file.

::

    [filter:session]
    use = egg:wsgisession#session
    store = sqlite:///%(here)s/sessions.sqlite3
    expire_after = 86400
    cookie_secure = auto

    [pipeline:main]
    pipeline = session myapp

The keys are those of :func:`wsgisession.contrib.middleware_options`.  This
module imports nothing from PasteDeploy: the entry point
``paste.filter_app_factory: session`` is declared in ``setup.cfg``.  Without
the package installed, ``use = call:wsgisession.contrib.paste:filter_factory``
does the same (PasteDeploy's ``call:`` expects a filter factory).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ..middleware import SessionMiddleware, WSGIApp
from . import middleware_options

__all__ = ["filter_app_factory", "filter_factory"]


def filter_app_factory(app: WSGIApp, global_conf: Mapping[str, Any], **local_conf: Any) -> SessionMiddleware:
    """Wrap ``app`` in SessionMiddleware built from the filter section's keys.

    ``global_conf`` (the ``[DEFAULT]`` section) is not read: session settings
    belong in the filter's own section.  An unknown key is a ``ValueError``.
    """
    return SessionMiddleware(app, **middleware_options(local_conf))


def filter_factory(global_conf: Mapping[str, Any], **local_conf: Any) -> Callable[[WSGIApp], SessionMiddleware]:
    """The same filter as a PasteDeploy ``filter_factory``: settings first, the app later.

    The settings are checked (and the store built) here, when the ini file is loaded.
    """
    options = middleware_options(local_conf)

    def wrap(app: WSGIApp) -> SessionMiddleware:
        return SessionMiddleware(app, **options)

    return wrap
