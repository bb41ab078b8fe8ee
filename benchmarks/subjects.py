"""The table of everything measured: baselines, wsgisession with each store, and the peers.

A :class:`Subject` builds one WSGI app serving the scenarios.  Each of ours
names the peers doing the same job, so the report can put their added costs
side by side.  ``--only`` selects subjects by name or by group (``ours``,
``beaker``, ``flask``, ``flask-session``); baselines are always measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from wsgisession import SessionMiddleware

from . import peers
from .floor import floor
from .ours import OUR_STORES, OurStore, supports_lock
from .scenarios import WSGIApp, WsgisessionStyle, bare_app, flask_app, session_app
from .workspace import Unavailable, Workspace

BARE = "bare"
FLASK_BARE = "flask-bare"


@dataclass(frozen=True)
class Subject:
    """One measured app: its name, its group, the baseline its added cost is counted from."""

    name: str
    group: str
    baseline: str
    description: str
    #: ``build(workspace, label)``: a new WSGI app, or :class:`Unavailable`.
    build: Callable[[Workspace, str], WSGIApp]
    #: The peers doing the same job (for ours).
    peers: Tuple[str, ...] = ()
    #: For ours: builds the app with ``lock=True`` (raises Unavailable when the store has no locks).
    build_locked: Optional[Callable[[Workspace, str], WSGIApp]] = None

    @property
    def is_ours(self) -> bool:
        """True for wsgisession subjects."""
        return self.group == "ours"


def _bare(workspace: Workspace, label: str) -> WSGIApp:
    return bare_app


def _floor(workspace: Workspace, label: str) -> WSGIApp:
    return floor(session_app(WsgisessionStyle()))


def _ours_in_flask(store: OurStore) -> Callable[[Workspace, str], WSGIApp]:
    # The Flask integration on the same Flask app as the Flask peers.
    def build(workspace: Workspace, label: str) -> WSGIApp:
        peers.flask_bare(workspace, label)  # Unavailable without Flask
        from wsgisession.contrib.flask import WsgiSession

        built = store.build(workspace, label)
        return flask_app(lambda app: WsgiSession(app, store=built))  # type: ignore[no-any-return]

    return build


def _ours(store: OurStore, *, lock: bool) -> Callable[[Workspace, str], WSGIApp]:
    def build(workspace: Workspace, label: str) -> WSGIApp:
        built = store.build(workspace, label)
        if lock and built.client_side:
            raise Unavailable(f"{type(built).__name__} keeps the session in the cookie: lock=True does not apply")
        if lock and not supports_lock(built):
            raise Unavailable(f"{type(built).__name__} does not implement lock_session()")
        return SessionMiddleware(session_app(WsgisessionStyle()), built, lock=lock)

    return build


# Through the Flask integration, ours is measured from the same baseline as
# the Flask peers (Flask without a session), so both sides pay Flask's own
# session handling: the like-for-like comparison.
_OUR_FLASK_PEERS: Dict[str, Tuple[str, ...]] = {
    "memory": ("flask:cookie",),
    "cookie": ("flask:cookie",),
    "redis": ("flask-session:redis",),
}

_OUR_PEERS: Dict[str, Tuple[str, ...]] = {
    "memory": ("floor", "beaker:memory"),
    "cookie": ("beaker:cookie", "flask:cookie"),
    "sqlite": ("beaker:sqla", "flask-session:sqla"),
    "sqlite-full": ("beaker:sqla",),
    "postgres": ("beaker:sqla-postgres",),
    "redis": ("flask-session:redis",),
}

SUBJECTS: Tuple[Subject, ...] = (
    Subject(BARE, "baseline", BARE, "plain WSGI app, no session", _bare),
    Subject(FLASK_BARE, "baseline", FLASK_BARE, "Flask app that never touches its session", peers.flask_bare),
    Subject(
        "floor",
        "floor",
        BARE,
        "a minimal lazy session middleware in benchmarks/floor.py, not a product (no expiry, no guarantees)",
        _floor,
    ),
    *(
        Subject(
            f"ours:{store.name}",
            "ours",
            BARE,
            f"wsgisession {store.description}",
            _ours(store, lock=False),
            _OUR_PEERS.get(store.name, ()),
            _ours(store, lock=True),
        )
        for store in OUR_STORES
    ),
    *(
        Subject(
            f"ours-flask:{store.name}",
            "ours",
            FLASK_BARE,
            f"wsgisession's Flask integration (WsgiSession), {store.description}",
            _ours_in_flask(store),
            _OUR_FLASK_PEERS[store.name],
        )
        for store in OUR_STORES
        if store.name in _OUR_FLASK_PEERS
    ),
    Subject("beaker:memory", "beaker", BARE, "Beaker memory", peers.beaker_memory),
    Subject("beaker:cookie", "beaker", BARE, "Beaker signed cookie", peers.beaker_cookie),
    Subject(
        "beaker:sqla", "beaker", BARE, "Beaker ext:sqla on SQLite, no accessed-time write", peers.beaker_sqla_sqlite
    ),
    Subject(
        "beaker:sqla-postgres",
        "beaker",
        BARE,
        "Beaker ext:sqla on PostgreSQL, no accessed-time write",
        peers.beaker_sqla_postgres,
    ),
    Subject("flask:cookie", "flask", FLASK_BARE, "Flask signed cookie session", peers.flask_cookie),
    Subject(
        "flask-session:sqla",
        "flask-session",
        FLASK_BARE,
        "Flask-Session SQLAlchemy on SQLite, no refresh-each-request",
        peers.flask_session_sqla_sqlite,
    ),
    Subject(
        "flask-session:redis",
        "flask-session",
        FLASK_BARE,
        "Flask-Session Redis, no refresh-each-request",
        peers.flask_session_redis,
    ),
)

SUBJECTS_BY_NAME: Dict[str, Subject] = {subject.name: subject for subject in SUBJECTS}


def select(only: Optional[Iterable[str]]) -> List[Subject]:
    """The subjects named by ``only`` (names or groups; ``memory`` means ``ours:memory``), baselines first.

    Raises ``ValueError`` for a name that matches nothing.
    """
    if not only:
        return list(SUBJECTS)
    chosen = {BARE, FLASK_BARE}
    for wanted in only:
        matches = [
            subject.name
            for subject in SUBJECTS
            if wanted in (subject.name, subject.group) or subject.name == f"ours:{wanted}"
        ]
        if not matches:
            known = ", ".join(subject.name for subject in SUBJECTS)
            raise ValueError(
                f"--only {wanted!r} matches no subject; known: {known} (or a group: ours, beaker, flask, flask-session)"
            )
        chosen.update(matches)
    selected = [subject for subject in SUBJECTS if subject.name in chosen]
    # A baseline nobody counts from is not worth measuring.
    needed = {subject.baseline for subject in selected if subject.group != "baseline"} or {BARE}
    return [subject for subject in selected if subject.group != "baseline" or subject.name in needed]


def build_all(subjects: Iterable[Subject], workspace: Workspace) -> Tuple[Dict[str, WSGIApp], Dict[str, str]]:
    """Build each subject's app: ``(apps by name, reasons by name for those not available)``."""
    apps: Dict[str, WSGIApp] = {}
    unavailable: Dict[str, str] = {}
    for subject in subjects:
        try:
            apps[subject.name] = subject.build(workspace, subject.name)
        except Unavailable as exc:
            unavailable[subject.name] = str(exc)
        except Exception as exc:  # a broken store is reported, the others still run
            unavailable[subject.name] = f"failed to build: {type(exc).__name__}: {exc}"
    return apps, unavailable
