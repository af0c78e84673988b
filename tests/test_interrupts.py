"""A Ctrl-C Python dropped (raised inside a fork callback while DataLoader workers start) is raised
again at the next batch; tests/test_run.py kills a real `paddy run` at an epoch's end, where it lands."""

import signal

import pytest

from paddy.core.interrupts import interrupt_noted, note_and_raise, note_interrupts
from paddy.training.interrupts import RaiseDroppedInterrupt


def test_a_noted_interrupt_is_raised_at_the_next_batch_once():
    note_interrupts()
    with pytest.raises(KeyboardInterrupt):
        note_and_raise(signal.SIGINT, None)  # as if Python dropped this one
    with pytest.raises(KeyboardInterrupt):
        RaiseDroppedInterrupt().before_batch()
    assert not interrupt_noted.is_set()
    RaiseDroppedInterrupt().before_batch()  # nothing pending: the batch goes on


def test_an_ignored_ctrl_c_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        note_interrupts()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
