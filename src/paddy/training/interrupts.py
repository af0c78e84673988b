"""The fastai callback that raises a Ctrl-C Python dropped while DataLoader workers started
(see paddy.core.interrupts).
"""

from __future__ import annotations

from fastai.callback.core import Callback, TrainEvalCallback

from paddy.core.interrupts import interrupt_noted


class RaiseDroppedInterrupt(Callback):
    """Raise, at the next batch, a Ctrl-C that Python dropped while DataLoader workers were starting."""

    order = TrainEvalCallback.order - 1  # before fastai's first callback: nothing else of the batch runs

    def before_batch(self) -> None:
        if interrupt_noted.is_set():
            interrupt_noted.clear()
            raise KeyboardInterrupt
