"""The WSGI entry point gunicorn loads in server mode: ``benchmarks.served:application``.

The subject and the run it belongs to come from environment variables set by
:mod:`benchmarks.server`, so the worker builds the same app as the in-process
mode, with tables and keys named after the same run (the parent cleans them up).
"""

from __future__ import annotations

import os
from pathlib import Path

from .scenarios import WSGIApp
from .server import DIRECTORY_VARIABLE, RUN_ID_VARIABLE, SUBJECT_VARIABLE
from .subjects import SUBJECTS_BY_NAME
from .workspace import Workspace


def build() -> WSGIApp:
    """Build the subject named in the environment, inside the parent's workspace."""
    workspace = Workspace(os.environ[RUN_ID_VARIABLE], Path(os.environ[DIRECTORY_VARIABLE]), owner=False)
    subject = SUBJECTS_BY_NAME[os.environ[SUBJECT_VARIABLE]]
    return subject.build(workspace, subject.name + "_server")


application = build()
