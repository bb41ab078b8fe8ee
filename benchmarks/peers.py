"""The peers wsgisession is measured against, each built as a WSGI app running the scenarios.

Beaker runs with its defaults except the SQLAlchemy backend, which runs with
``save_accessed_time=False`` (no write on a read: the faster variant, the one
the targets name).  Flask-Session runs with ``SESSION_REFRESH_EACH_REQUEST =
False`` for the same reason (its default writes on every request).  A peer
whose package is missing is reported as not available.
"""

from __future__ import annotations

import warnings
from typing import Any

from .ours import BENCH_SECRET
from .scenarios import BeakerStyle, WSGIApp, flask_app, session_app
from .workspace import Unavailable, Workspace


def _beaker_middleware() -> Any:
    try:
        from beaker.middleware import SessionMiddleware
    except ImportError as exc:
        raise Unavailable(f"Beaker is not installed ({exc}); pip install -e .[bench]") from exc
    return SessionMiddleware


def beaker_memory(workspace: Workspace, label: str) -> WSGIApp:
    """Beaker's in-process memory backend, defaults otherwise."""
    middleware = _beaker_middleware()
    return middleware(session_app(BeakerStyle()), type="memory")  # type: ignore[no-any-return]


def beaker_cookie(workspace: Workspace, label: str) -> WSGIApp:
    """Beaker's signed cookie sessions, defaults otherwise."""
    middleware = _beaker_middleware()
    return middleware(session_app(BeakerStyle()), type="cookie", validate_key=BENCH_SECRET)  # type: ignore[no-any-return]


def _beaker_sqla(workspace: Workspace, label: str, url: str) -> WSGIApp:
    middleware = _beaker_middleware()
    import sqlalchemy as sa
    from beaker.ext.sqla import SqlaNamespaceManager, make_cache_table

    SqlaNamespaceManager._init_dependencies()  # make_cache_table needs the module's SQLAlchemy import
    engine = sa.create_engine(url)
    workspace.on_close(engine.dispose)
    table = make_cache_table(sa.MetaData(), workspace.table_name(label))
    table.create(engine, checkfirst=True)
    return middleware(  # type: ignore[no-any-return]
        session_app(BeakerStyle()),
        type="ext:sqla",
        bind=engine,
        table=table,
        data_dir=str(workspace.directory / f"beaker-{label}"),
        save_accessed_time=False,
    )


def beaker_sqla_sqlite(workspace: Workspace, label: str) -> WSGIApp:
    """Beaker's ``ext:sqla`` backend on an SQLite file, without the accessed-time write."""
    return _beaker_sqla(workspace, label, workspace.sqlite_url(label))


def beaker_sqla_postgres(workspace: Workspace, label: str) -> WSGIApp:
    """Beaker's ``ext:sqla`` backend on PostgreSQL, without the accessed-time write."""
    return _beaker_sqla(workspace, label, workspace.require_postgres())


def _flask() -> None:
    try:
        import flask  # noqa: F401
    except ImportError as exc:
        raise Unavailable(f"Flask is not installed ({exc}); pip install -e .[bench]") from exc


def flask_bare(workspace: Workspace, label: str) -> WSGIApp:
    """Flask without a session: the baseline of the Flask peers."""
    _flask()
    return flask_app(use_session=False)  # type: ignore[no-any-return]


def flask_cookie(workspace: Workspace, label: str) -> WSGIApp:
    """Flask's default session: a signed cookie (itsdangerous)."""
    _flask()

    def configure(app: Any) -> None:
        app.secret_key = BENCH_SECRET

    return flask_app(configure)  # type: ignore[no-any-return]


def _flask_session(configure: Any) -> WSGIApp:
    _flask()
    try:
        from flask_session import Session
    except ImportError as exc:
        raise Unavailable(f"Flask-Session is not installed ({exc}); pip install -e .[bench]") from exc

    def setup(app: Any) -> None:
        app.config.update(SESSION_PERMANENT=True, SESSION_REFRESH_EACH_REQUEST=False)
        configure(app)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Session(app)

    return flask_app(setup)  # type: ignore[no-any-return]


def flask_session_sqla_sqlite(workspace: Workspace, label: str) -> WSGIApp:
    """Flask-Session's SQLAlchemy backend (through Flask-SQLAlchemy) on an SQLite file."""
    try:
        from flask_sqlalchemy import SQLAlchemy
    except ImportError as exc:
        raise Unavailable(
            f"Flask-SQLAlchemy is not installed ({exc}); Flask-Session's SQLAlchemy backend needs it"
        ) from exc

    def configure(app: Any) -> None:
        database = SQLAlchemy()
        app.config.update(
            SQLALCHEMY_DATABASE_URI=workspace.sqlite_url(label),
            SESSION_TYPE="sqlalchemy",
            SESSION_SQLALCHEMY=database,
            SESSION_SQLALCHEMY_TABLE=workspace.table_name(label),
        )
        database.init_app(app)

        def dispose() -> None:
            with app.app_context():
                database.engine.dispose()

        workspace.on_close(dispose)

    return _flask_session(configure)


def flask_session_redis(workspace: Workspace, label: str) -> WSGIApp:
    """Flask-Session's Redis backend."""
    url = workspace.require_redis()
    import redis

    client = redis.Redis.from_url(url)
    workspace.on_close(client.close)

    def configure(app: Any) -> None:
        app.config.update(SESSION_TYPE="redis", SESSION_REDIS=client, SESSION_KEY_PREFIX=workspace.redis_prefix(label))

    return _flask_session(configure)
