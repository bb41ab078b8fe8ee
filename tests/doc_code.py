"""The Python code blocks of the README and the docs, found and run as a reader would run them.

A ``.. code-block:: python`` block (or ``.. code:: python``) is a program:
the blocks of one page run in order, in one namespace, so a later block may
use what an earlier one defined.  A block that can not run on its own (a few
lines out of an app) is a fragment and is written as a literal block
(``::``), which is shown highlighted and never run.  CONTRIBUTING.rst says
the same for writers.

The namespace starts with what a page may take for granted:
``application``, a plain WSGI app standing for the reader's own, and the
environment variables the pages read secrets from.  Each page runs in a
temporary working directory, so files it creates (a SQLite database) go
there.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, NamedTuple

REPO = Path(__file__).resolve().parent.parent

#: Environment variables the pages read keys from, with throwaway values.
PAGE_ENVIRONMENT = {
    "SESSION_SECRET_KEY": "a-development-secret-key-of-more-than-32-bytes",
    "OLD_SESSION_SECRET_KEY": "an-older-development-secret-key-of-32-bytes-too",
    "SESSION_ENCRYPTION_KEY": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
}

_DIRECTIVE = re.compile(r"^(?P<indent> *)\.\. (?:code-block|code|sourcecode)::\s*(?P<language>\S*)\s*$")


class CodeBlock(NamedTuple):
    """One Python block: the page it is on, its first line there (1-based), its source."""

    path: Path
    line: int
    source: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def pages() -> List[Path]:
    """Every reStructuredText file a reader is shown: the README, the docs, the other top-level guides."""
    found = [REPO / "README.rst", REPO / "CONTRIBUTING.rst", REPO / "benchmarks" / "README.rst"]
    found += sorted((REPO / "docs").rglob("*.rst"))
    return [path for path in found if path.exists() and "_build" not in path.parts]


def python_blocks(path: Path) -> List[CodeBlock]:
    """The Python code blocks of a page, dedented, in page order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    number = 0
    while number < len(lines):
        match = _DIRECTIVE.match(lines[number])
        number += 1
        if not match or match.group("language") not in ("python", "python3", "py"):
            continue
        indent = len(match.group("indent"))
        # Options (":caption: ...") and the blank line before the content.
        while number < len(lines) and (not lines[number].strip() or lines[number].strip().startswith(":")):
            if not lines[number].strip():
                number += 1
                break
            number += 1
        first = number
        body: List[str] = []
        while number < len(lines) and (not lines[number].strip() or _indent_of(lines[number]) > indent):
            body.append(lines[number])
            number += 1
        while body and not body[-1].strip():
            body.pop()
        depth = min(_indent_of(line) for line in body if line.strip())
        source = "\n".join(line[depth:] for line in body)
        blocks.append(CodeBlock(path, first + 1, source))
    return blocks


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def plain_application(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The reader's own WSGI app, as the pages' ``application``: it answers 200 and leaves the session alone."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def run_page(blocks: List[CodeBlock], namespace: Dict[str, Any]) -> Dict[str, Any]:
    """Run a page's blocks in order in ``namespace``; tracebacks name the page and its lines.

    While they run, the namespace is a module in ``sys.modules``, as a
    reader's code would be (frameworks look their callers' modules up).
    """
    module = types.ModuleType(namespace["__name__"])
    module.__dict__.update(namespace)
    sys.modules[module.__name__] = module
    try:
        for block in blocks:
            # Blank lines in front keep the line numbers of the page in tracebacks.
            code = compile("\n" * (block.line - 1) + block.source, str(block.path), "exec")
            try:
                exec(code, module.__dict__)
            except Exception as exc:
                raise AssertionError(f"the code block at {block.where} failed: {exc!r}") from exc
    finally:
        del sys.modules[module.__name__]
    return module.__dict__


def page_namespace() -> Dict[str, Any]:
    """A fresh namespace, as a reader's module would start."""
    return {"__name__": "docs_example", "application": plain_application}
