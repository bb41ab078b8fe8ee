"""Adopting the sessions of another session system, so that switching to wsgisession logs nobody out.

An *adopter* is called for a request that brings no wsgisession session
(no cookie, or one that opens nothing) when the application first touches
its session.  It looks for a session of the system being replaced (its
cookie, the record that cookie names) and answers an :class:`Adoption`, or
None.  The request's new wsgisession session then starts with the adopted
data and a fresh id; when it is saved, the adoption's ``on_commit`` runs
(deleting the old record, say) and the response removes the old cookies.
A request that fails saves nothing and adopts nothing: the old session is
still there for the next one.

``SessionMiddleware(app, store, adopter=...)`` takes any callable
``adopter(environ) -> Adoption | None``.  An adopter may also name the old
system's cookies in a ``legacy_cookies`` attribute (a sequence of
:class:`LegacyCookie`): a browser that brings a wsgisession session and
still one of those cookies then has that cookie removed, and keeps ours.

:mod:`wsgisession.adopters` has adopters for Flask's signed-cookie session
and for Flask-Session's stores; ``wsgisession.contrib.flask`` sets them up
from the app's config (``WSGISESSION_ADOPT_FLASK_COOKIE``,
``WSGISESSION_ADOPT_FLASK_SESSION``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

__all__ = ["Adoption", "Adopter", "LegacyCookie"]


@dataclass(frozen=True)
class LegacyCookie:
    """A cookie of the system being replaced, removed by the response that adopts its session.

    A cookie is named by its name, path and domain together: give the ones
    the old system set it with.
    """

    name: str
    path: str = "/"
    domain: Optional[str] = None


@dataclass
class Adoption:
    """What an adopter found for a request: the data to carry over, and how to retire the old session."""

    #: The values the new session starts with, as the application will see
    #: them (they must be storable in a session: JSON and the tagged types).
    data: Mapping[str, Any]
    #: The old cookies the response removes.
    expire: Sequence[LegacyCookie] = ()
    #: The old session's persistence (Flask's ``permanent``), or None for the
    #: middleware's default.
    persistent: Optional[bool] = None
    #: Run when the new session is saved, before anything is written: True
    #: when the old session was still there to retire (the old record deleted,
    #: atomically), False when a concurrent request adopted it first, in which
    #: case this request saves no session and sets no cookie.
    on_commit: Optional[Callable[[], bool]] = None


#: ``adopter(environ)``: the :class:`Adoption` for a request, or None.
Adopter = Callable[[Dict[str, Any]], Optional[Adoption]]
