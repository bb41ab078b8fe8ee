"""Shared fixtures: the fake clock and WebTest apps around SessionMiddleware."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from webtest import TestApp

from wsgisession import SessionMiddleware
from wsgisession.testing import FakeClock

from .support import browser, json_app


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_app(clock: FakeClock) -> Callable[..., TestApp]:
    """``make_app(handler, store=..., **middleware_options)``: a TestApp with the fake clock."""

    def make(handler: Callable[[Any, dict], Any], store: Any = None, **options: Any) -> TestApp:
        options.setdefault("clock", clock)
        return browser(SessionMiddleware(json_app(handler), store, **options))

    return make
