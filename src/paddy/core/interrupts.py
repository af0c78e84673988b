"""Ctrl-C that always stops training.

Python runs its fork callbacks (logging's `_releaseLock`) when a DataLoader starts its worker
processes, and an exception raised in them is printed as "Exception ignored" and dropped: a Ctrl-C
that lands while workers start (every epoch) would be lost and the run would go on to the end. The
SIGINT handler here also notes the interrupt, and a callback raises it again at the next batch.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

interrupt_noted = threading.Event()


def note_and_raise(signum: int, frame: FrameType | None) -> None:
    """SIGINT: note it (in case the KeyboardInterrupt is dropped), then raise it as Python would."""
    interrupt_noted.set()
    raise KeyboardInterrupt


def note_interrupts() -> None:
    """Use `note_and_raise` for SIGINT where Python's own handler is (not where Ctrl-C is ignored)."""
    interrupt_noted.clear()
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) in (
        signal.default_int_handler,
        note_and_raise,
    ):
        signal.signal(signal.SIGINT, note_and_raise)
