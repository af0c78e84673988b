"""A pool of GPUs for `paddy run --gpus`: each job (one run of an ensemble) is a worker process that
sees one GPU (`CUDA_VISIBLE_DEVICES`), at most one job per GPU at a time, the next job starting on
whichever GPU comes free.

A worker that fails or dies fails its job, never the pool: the other jobs go on and the failure is
reported with its log's last line. A pool that is interrupted stops its workers (and a worker whose
pool is killed outright dies with it, on Linux, its loader processes a few seconds later), so
nothing trains on unseen; the run folders'
checkpoints let the next `paddy run` resume what was cut short.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from paddy.core.errors import PaddyError
from paddy.core.processes import die_with_parent
from paddy.runs.folder import RunFolder

POLL_SECONDS = 0.2


STOP_GRACE_SECONDS = 10  # a worker asked to stop saves nothing more; then it is killed


WORKER_LOG = "worker.log"


def parse_gpus(text: str, available: int) -> list[str]:
    """'all' (every CUDA device torch sees) or a list such as '0,1', as CUDA_VISIBLE_DEVICES values."""
    if text.strip().lower() == "all":
        if available < 1:
            raise PaddyError("--gpus all: torch sees no CUDA GPU here; name them (--gpus 0,1) or leave --gpus out")
        return [str(i) for i in range(available)]
    names = [part.strip() for part in text.split(",")]
    if not all(name.isdigit() for name in names):
        raise PaddyError(f"--gpus {text!r} is not 'all' or GPU numbers such as 0,1")
    if len(set(names)) != len(names):
        raise PaddyError(f"--gpus {text!r} names a GPU twice: one job at a time runs on each")
    return names


@dataclass(frozen=True)
class PoolJob:
    """One worker to run: what to call it, the run folder its log ends in, and its command."""

    label: str
    run: RunFolder
    argv: list[str]


@dataclass(frozen=True)
class JobOutcome:
    """How a job ended: on which GPU, when (monotonic seconds), its exit code and its log."""

    job: PoolJob
    device: str
    started: float
    ended: float
    returncode: int
    log: Path

    @property
    def failed(self) -> bool:
        return self.returncode != 0

    def last_line(self) -> str:
        """The log's last non-empty line (a failed worker's one-line error)."""
        try:
            lines = [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return ""
        return lines[-1].strip() if lines else ""


@dataclass(frozen=True)
class PoolEvent:
    """A job started (outcome None) or ended, and how many jobs wait for a GPU."""

    job: PoolJob
    device: str
    log: Path
    waiting: int
    outcome: JobOutcome | None = None


@dataclass
class Running:
    job: PoolJob
    process: subprocess.Popen
    started: float
    log: Path


def pending_log(logs: Path, job: PoolJob) -> Path:
    """Where a running job's output goes: beside the run folders, since a run that starts afresh
    clears its folder. It moves into the folder when the job ends."""
    return logs / f"{job.run.name}.log"


def start_job(job: PoolJob, device: str, logs: Path) -> Running:
    log = pending_log(logs, job)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": device}
    with open(log, "wb") as output:  # the child keeps its own descriptor
        process = subprocess.Popen(  # its own session: a Ctrl-C reaches the pool, which stops it in order
            job.argv,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=functools.partial(die_with_parent, os.getpid()),
            start_new_session=True,
        )
    return Running(job, process, time.monotonic(), log)


def settle_log(running: Running) -> Path:
    """Move a finished job's log into its run folder (where the run folder exists)."""
    if not running.job.run.path.is_dir():
        return running.log
    target = running.job.run.path / WORKER_LOG
    os.replace(running.log, target)
    return target


def signal_worker(process: subprocess.Popen, number: signal.Signals) -> None:
    """Signal a worker and its data loader processes (its session's process group)."""
    try:
        os.killpg(process.pid, number)
    except ProcessLookupError:
        pass


def stop_all(running: dict[str, Running]) -> None:
    """Ask every worker to stop (SIGINT, as Ctrl-C), and kill those that have not after the grace time."""
    for one in running.values():
        signal_worker(one.process, signal.SIGINT)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for one in running.values():
        try:
            one.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            signal_worker(one.process, signal.SIGKILL)
            one.process.wait()
        settle_log(one)


def run_pool(
    jobs: list[PoolJob], devices: list[str], logs: Path, on_event: Callable[[PoolEvent], None] = lambda event: None
) -> list[JobOutcome]:
    """Run every job, at most one per device at a time, in order as devices come free; the outcomes
    in the order the jobs ended."""
    logs.mkdir(parents=True, exist_ok=True)
    waiting, running, outcomes = deque(jobs), dict[str, Running](), list[JobOutcome]()
    try:
        while waiting or running:
            for device in devices:
                if device not in running and waiting:
                    job = waiting.popleft()
                    running[device] = start_job(job, device, logs)
                    on_event(PoolEvent(job, device, running[device].log, len(waiting)))
            for device, one in list(running.items()):
                if (returncode := one.process.poll()) is None:
                    continue
                del running[device]
                outcome = JobOutcome(one.job, device, one.started, time.monotonic(), returncode, settle_log(one))
                outcomes.append(outcome)
                on_event(PoolEvent(one.job, device, outcome.log, len(waiting), outcome))
            time.sleep(POLL_SECONDS)
    finally:
        stop_all(running)
    return outcomes
