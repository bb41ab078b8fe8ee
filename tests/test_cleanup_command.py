"""``python -m wsgisession cleanup``: deletes expired SQLAlchemyStore rows from cron."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
import sqlalchemy as sa
from webtest import TestApp

from wsgisession.__main__ import main
from wsgisession.stores.sqlalchemy import SQLAlchemyStore
from wsgisession.testing import FakeClock

from .support import MYSQL_URL, POSTGRES_URL, RUN_ID, counter_app, require_service

REPO = Path(__file__).resolve().parent.parent
HOUR = 60 * 60

_table_numbers = itertools.count()


@pytest.fixture(params=["sqlite-file", "postgresql", "mariadb"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite-file":
        return f"sqlite:///{tmp_path / 'sessions.sqlite3'}"
    if request.param == "postgresql":
        return require_service("PostgreSQL", POSTGRES_URL)
    return require_service("MariaDB", MYSQL_URL)


@pytest.fixture
def table(url: str) -> Iterator[str]:
    """A fresh table name, dropped afterwards."""
    name = f"cleanup_{RUN_ID}_{next(_table_numbers)}"
    yield name
    engine = sa.create_engine(url)
    try:
        sa.Table(name, sa.MetaData()).drop(engine, checkfirst=True)
    finally:
        engine.dispose()


def fill(make_app: Callable[..., TestApp], url: str, table: str, *, expired: int, live: int) -> None:
    """Store ``expired`` sessions that died an hour ago and ``live`` ones good for a day."""
    for count, clock, expire_after in ((expired, FakeClock(time.time() - HOUR), 60), (live, FakeClock(), 24 * HOUR)):
        store = SQLAlchemyStore(url, table, clock=clock)
        for _ in range(count):
            make_app(counter_app, store, expire_after=expire_after, clock=clock).get("/")
        store.close()


def count_rows(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(sa.table(table))).scalar_one())
    finally:
        engine.dispose()


def test_cleanup_deletes_expired_rows_and_says_how_many(
    url: str, table: str, make_app: Callable[..., TestApp], capsys: pytest.CaptureFixture[str]
) -> None:
    fill(make_app, url, table, expired=3, live=2)
    assert main(["cleanup", "--url", url, "--table", table]) == 0
    assert capsys.readouterr().out == f"deleted 3 expired sessions from table {table!r}\n"
    assert count_rows(url, table) == 2
    assert main(["cleanup", "--url", url, "--table", table]) == 0
    assert capsys.readouterr().out == f"deleted 0 expired sessions from table {table!r}\n"


def test_the_command_runs_as_a_module_on_the_default_table(tmp_path: Path, make_app: Callable[..., TestApp]) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.sqlite3'}"
    fill(make_app, url, "sessions", expired=1, live=1)
    finished = subprocess.run(
        [sys.executable, "-m", "wsgisession", "cleanup", "--url", url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (finished.returncode, finished.stdout, finished.stderr) == (
        0,
        "deleted 1 expired session from table 'sessions'\n",
        "",
    )
    assert count_rows(url, "sessions") == 1


def test_an_unreachable_database_exits_non_zero_with_the_cause(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["cleanup", "--url", "postgresql+psycopg://postgres@127.0.0.1:1/test"])
    error = capsys.readouterr().err
    assert status == 1
    assert error.startswith("wsgisession cleanup: SQLAlchemyStore could not delete expired sessions")
    assert "127.0.0.1:1" in error and "refused" in error


def test_a_missing_table_is_an_error_not_created(
    tmp_path: Path, make_app: Callable[..., TestApp], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.sqlite3'}"
    fill(make_app, url, "sessions", expired=0, live=1)
    assert main(["cleanup", "--url", url, "--table", "no_such_table"]) == 1
    assert "no such table: no_such_table" in capsys.readouterr().err
    engine = sa.create_engine(url)
    assert sa.inspect(engine).get_table_names() == ["sessions"]
    engine.dispose()


def test_a_missing_sqlite_file_is_an_error_not_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "typo.sqlite3"
    assert main(["cleanup", "--url", f"sqlite:///{path}"]) == 1
    assert capsys.readouterr().err == f"wsgisession cleanup: no SQLite database at {path}\n"
    assert not path.exists()


def test_a_bad_url_exits_non_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cleanup", "--url", "nosuchdatabase://somewhere"]) == 1
    assert "can not use the database URL" in capsys.readouterr().err


def test_a_missing_url_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["cleanup"])
    assert exit.value.code == 2
    assert "--url" in capsys.readouterr().err
