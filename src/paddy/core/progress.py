"""How far long work deep in the library has got (the image check of every file of a dataset), for whoever
shows it: a command sets a reporter for its duration (the CLI draws a bar with the time left), the work
reports to it; with none set (tests, scripts, another program calling paddy) reporting does nothing.

A context variable rather than an argument: the work is several calls below the command's one library
call, and only the command knows whether anyone is watching.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable

Reporter = Callable[[str, int, int], None]  # what is under way, how many done, how many in all

_reporter: ContextVar[Reporter | None] = ContextVar("paddy_progress_reporter", default=None)


@contextmanager
def reporting_to(reporter: Reporter) -> Iterator[None]:
    """Work reports its progress to `reporter` inside the block."""
    token = _reporter.set(reporter)
    try:
        yield
    finally:
        _reporter.reset(token)


def report_progress(what: str, done: int, total: int) -> None:
    """`done` of `total` of `what` are done (the reporter learns the end when `done` reaches `total`)."""
    if (reporter := _reporter.get()) is not None:
        reporter(what, done, total)
