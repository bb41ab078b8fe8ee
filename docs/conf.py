"""Sphinx configuration of wsgisession's documentation.

Build it from the repository's root with
``python -m sphinx -W --keep-going -n docs docs/_build/html``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The package is documented from this checkout, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import wsgisession  # noqa: E402

project = "wsgisession"
author = "wsgisession contributors"
copyright = "the wsgisession contributors"
release = wsgisession.__version__
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]

html_theme = "furo"
html_title = f"wsgisession {release}"
templates_path: list = []
exclude_patterns = ["_build"]

# Every reference must resolve (CI builds with -n -W).
nitpicky = True
default_role = "code"

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True

# The frameworks' and drivers' types in signatures.  Their projects publish
# inventories, but the build runs without network access, so a reference to
# one of them has no target: each is listed here by its exact name.
nitpick_ignore = [
    ("py:class", name)
    for name in (
        # The standard library's.
        "collections.abc.ItemsView",
        "collections.abc.KeysView",
        "collections.abc.MutableMapping",
        "collections.abc.ValuesView",
        "datetime.datetime",
        "datetime.timedelta",
        "enum.Enum",
        # The frameworks'.
        "bottle.Bottle",
        "bottle.Route",
        "flask.app.Flask",
        "flask.sessions.SecureCookieSessionInterface",
        "flask.sessions.SessionInterface",
        "flask.sessions.SessionMixin",
        "flask.wrappers.Request",
        "flask.wrappers.Response",
        "pyramid.config.Configurator",
        # redis-py's.
        "redis.Redis",
        "redis.client.Redis",
        "redis.cluster.RedisCluster",
        # SQLAlchemy's.
        "sqlalchemy.engine.base.Engine",
        "sqlalchemy.engine.url.URL",
        "sqlalchemy.sql.schema.MetaData",
        "sqlalchemy.sql.schema.Table",
    )
]

# Our own aliases stay names in signatures, linked to their entries in api.rst.
autodoc_type_aliases = {
    "WSGIEnviron": "wsgisession.store.WSGIEnviron",
}
