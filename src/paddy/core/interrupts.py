"""Ctrl-C that always stops training.

Python runs its fork callbacks (logging's `_releaseLock`) when a DataLoader starts its worker
processes, and an exception raised in them is printed as "Exception ignored" and dropped: a Ctrl-C
that lands while workers start (every epoch) would be lost and the run would go on to the end. The
SIGINT handler here also notes the interrupt, and a callback raises it again at the next batch.
While a fork is under way it only notes it: a KeyboardInterrupt raised inside a fork callback is
printed as "Exception ignored" with a traceback, in the parent and in the new worker, for each one.
The same Ctrl-C also ends those workers (it reaches the whole process group), so the next batch can fail
("DataLoader worker ... exited unexpectedly") before it raises the interrupt: `interrupt_first` makes any
error after a noted Ctrl-C that Ctrl-C.
"""

from __future__ import annotations

import logging  # noqa: F401  (its fork callbacks are Python code: registered before this module's)
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

interrupt_noted = threading.Event()


forks_under_way = [0]  # from just before a fork until its callbacks ran (the child inherits it); no lock to fork


def started_fork() -> None:
    forks_under_way[0] += 1


def ended_fork() -> None:
    forks_under_way[0] = max(0, forks_under_way[0] - 1)


# registered after logging's: `before` runs before its callbacks and `after_*` after them
os.register_at_fork(before=started_fork, after_in_parent=ended_fork, after_in_child=ended_fork)


def note_and_raise(signum: int, frame: FrameType | None) -> None:
    """SIGINT: note it (in case the KeyboardInterrupt is dropped), then raise it as Python would, unless a
    fork is under way (raised in its callbacks, it would only be printed): the next batch raises it."""
    interrupt_noted.set()
    if not forks_under_way[0]:
        raise KeyboardInterrupt


def note_interrupts() -> None:
    """Use `note_and_raise` for SIGINT where Python's own handler is (not where Ctrl-C is ignored)."""
    interrupt_noted.clear()
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) in (
        signal.default_int_handler,
        note_and_raise,
    ):
        signal.signal(signal.SIGINT, note_and_raise)


@contextmanager
def interrupt_first() -> Iterator[None]:
    """Inside the block, an error raised once a Ctrl-C was noted is that Ctrl-C (a KeyboardInterrupt): what
    the Ctrl-C caused, such as a DataLoader worker it ended, is not reported as a failure of its own."""
    try:
        yield
    except Exception as error:
        if not interrupt_noted.is_set():
            raise
        raise KeyboardInterrupt from error
