"""A Ctrl-C Python dropped (raised inside a fork callback while DataLoader workers start) is raised
again at the next batch; tests/test_run.py kills a real `paddy run` at an epoch's end, where it lands."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer

import paddy
from paddy.cli.output import Interrupted, going_on_with, reports_errors
from paddy.core.interrupts import (
    ended_fork,
    interrupt_first,
    interrupt_noted,
    note_and_raise,
    note_interrupts,
    started_fork,
)
from paddy.training.interrupts import RaiseDroppedInterrupt


def test_a_noted_interrupt_is_raised_at_the_next_batch_once():
    note_interrupts()
    with pytest.raises(KeyboardInterrupt):
        note_and_raise(signal.SIGINT, None)  # as if Python dropped this one
    with pytest.raises(KeyboardInterrupt):
        RaiseDroppedInterrupt().before_batch()
    assert not interrupt_noted.is_set()
    RaiseDroppedInterrupt().before_batch()  # nothing pending: the batch goes on


def worker_ended_by_a_ctrl_c_during_its_fork() -> None:
    """What a Ctrl-C that lands while DataLoader workers start does: noted (not raised, a fork is under way),
    and the worker it also reached is gone when the next batch is fetched."""
    started_fork()
    try:
        note_and_raise(signal.SIGINT, None)
    finally:
        ended_fork()
    raise RuntimeError("DataLoader worker (pid(s) 11190) exited unexpectedly")


@pytest.fixture
def noted_ctrl_c_cleared():
    yield
    interrupt_noted.clear()  # left noted, it would stop the next test's training at its first batch


def test_an_error_after_a_noted_ctrl_c_is_that_ctrl_c_with_its_go_on_command(capsys, noted_ctrl_c_cleared):
    with pytest.raises(typer.Exit) as stopped:
        reports_errors(worker_ended_by_a_ctrl_c_during_its_fork)()
    assert stopped.value.exit_code == 130 and "interrupted" in capsys.readouterr().err
    with pytest.raises(Interrupted) as interrupted:
        with going_on_with(lambda: "paddy train --resume RUN"):
            worker_ended_by_a_ctrl_c_during_its_fork()
    assert interrupted.value.go_on == "paddy train --resume RUN"


def test_an_error_without_a_ctrl_c_is_not_taken_for_one():
    note_interrupts()
    with pytest.raises(RuntimeError, match="exited unexpectedly"):
        with interrupt_first():
            raise RuntimeError("DataLoader worker (pid(s) 11190) exited unexpectedly")


def test_an_ignored_ctrl_c_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        note_interrupts()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


FORK_WITH_CTRL_C = """
import os, signal, sys, time

def ctrl_c():  # a Ctrl-C landing inside a fork callback, as one does while DataLoader workers start
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)

os.register_at_fork(before=ctrl_c, after_in_child=ctrl_c)
from paddy.core.interrupts import interrupt_noted, note_interrupts
if sys.argv[1] == "paddy":
    note_interrupts()
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
print("noted" if interrupt_noted.is_set() else "not noted")
"""


@pytest.mark.parametrize("handler", ["python", "paddy"])
def test_a_ctrl_c_inside_a_fork_callback_is_noted_without_a_traceback(handler):
    env = {**os.environ, "PYTHONPATH": str(Path(paddy.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", FORK_WITH_CTRL_C, handler], capture_output=True, text=True, env=env)
    if handler == "python":  # the negative control: what Python prints for each callback
        assert "Exception ignored" in done.stderr and "KeyboardInterrupt" in done.stderr
        return
    assert done.returncode == 0 and done.stdout.strip() == "noted", done.stderr
    assert done.stderr == ""


def test_one_ctrl_c_during_lr_find_is_one_line(tiny_data_root, tmp_path):
    out = tmp_path / "runs"
    command = [sys.executable, "-m", "paddy", "lr-find", "--data", str(tiny_data_root), "--out", str(out)]
    tiny = ["--arch", "resnet18", "--size", "32", "--bs", "8", "--no-pretrained"]
    process = subprocess.Popen(
        [*command, *tiny],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, which a terminal's Ctrl-C reaches whole (workers too)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 180
    while not list(out.glob("*-lr-find/config.json")):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "lr-find never started"
        time.sleep(0.05)
    time.sleep(2)  # into the finder's batches, where the DataLoader workers start every few batches
    os.killpg(process.pid, signal.SIGINT)
    stderr = process.communicate(timeout=120)[1]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("interrupted"), stderr
