"""The saved memory probes (`<out>/memory-probes.json`): one record per model and budget, and
`accum = "auto"` resolved from them.

Kept apart from the probing itself (paddy.memory, which trains) so that training can read the
records without importing the probe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from paddy.core.errors import PaddyError
from paddy.core.files import read_json, write_json
from paddy.settings.entry import AUTO, ModelEntry

PROBES_FILE = "memory-probes.json"


MEASURED, ESTIMATE = "measured", "estimate"


# CUDA context, cuBLAS/cuDNN handles and workspaces: 300 MiB to 1 GiB per process in
# practice, depending on GPU and library versions. Added to every CPU estimate.
CUDA_CONTEXT_MIB = 800


@dataclass(frozen=True)
class Trial:
    """One accum tried: its per-step batch, peak (None when it ran out of memory), verdict."""

    accum: int
    step_bs: int
    peak_mib: float | None
    fits: bool
    parts: dict[str, Any] = field(default_factory=dict)

    @property
    def out_of_memory(self) -> bool:
        return self.peak_mib is None


def probe_key(entry: ModelEntry, budget_mib: float) -> dict[str, Any]:
    """What a probe result depends on: the model, its input sizes, batch, precision and budget, and a
    weight average (a second copy of the weights; keyed only when set, so older probes still match)."""
    return {
        "arch": entry.arch,
        "size": list(entry.size),
        "item": str(entry.item),
        "item_size": list(entry.resize_to),
        "bs": entry.bs,
        "precision": str(entry.precision),
        "budget_mib": budget_mib,
        **({"ema": True} if entry.ema else {}),
        **({"gpus": entry.gpus} if entry.gpus > 1 else {}),  # each process trains bs / gpus images
    }


def describe_key(key: dict[str, Any]) -> str:
    """A probe key as a short phrase for messages."""
    (h, w), (ih, iw) = key["size"], key["item_size"]
    averaged = (" with ema" if key.get("ema") else "") + (f" on {key['gpus']} GPUs" if key.get("gpus") else "")
    return (
        f"{key['arch']} {h}x{w} {key['item']} item_size {ih}x{iw} bs {key['bs']} precision {key['precision']}{averaged}"
    )


@dataclass(frozen=True)
class ProbeRecord:
    """The outcome of probing one entry against one budget, as saved in the probes file."""

    key: dict[str, Any]
    headroom: float
    kind: str
    device: str
    trials: list[Trial]
    when: str

    def describe(self) -> str:
        return describe_key(self.key)

    @property
    def limit_mib(self) -> float:
        return self.key["budget_mib"] * (1 - self.headroom)

    @property
    def accum(self) -> int | None:
        """The smallest accum that fits, or None if none did."""
        return next((t.accum for t in self.trials if t.fits), None)

    @property
    def context_allowance_mib(self) -> float | None:
        """The fixed CUDA context allowance an estimate includes (a measurement needs none)."""
        return CUDA_CONTEXT_MIB if self.kind == ESTIMATE else None

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "accum": self.accum,
            "limit_mib": round(self.limit_mib, 1),
            "cuda_context_allowance_mib": self.context_allowance_mib,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ProbeRecord:
        trials = [Trial(**trial) for trial in raw["trials"]]
        return cls(raw["key"], raw["headroom"], raw["kind"], raw["device"], trials, raw["when"])


def load_probes(path: Path) -> list[ProbeRecord]:
    """Every probe saved in `path` (none if it does not exist yet)."""
    if not path.is_file():
        return []
    try:
        return [ProbeRecord.from_json(raw) for raw in read_json(path)["probes"]]
    except (PaddyError, ValueError, KeyError, TypeError) as e:
        raise PaddyError(
            f"cannot read memory probes {path} ({type(e).__name__}: {e}); delete it and probe again"
        ) from None


def save_probes(path: Path, records: list[ProbeRecord]) -> None:
    """Write the probes file atomically."""
    write_json(path, {"probes": [r.to_json() for r in records]})


def save_probe(path: Path, record: ProbeRecord) -> None:
    """Add `record` to the probes file, replacing an older one of the same key and kind."""
    kept = [r for r in load_probes(path) if (r.key, r.kind) != (record.key, record.kind)]
    save_probes(path, [*kept, record])


@dataclass(frozen=True)
class ProbeRequest:
    """What `paddy probe-memory` must record: this entry's model (with `config`, every entry of that config),
    against this budget, on this data (None: the demo), under this output folder. The CLI writes the command."""

    entry: ModelEntry
    budget_mib: float
    out: Path
    data: Path | None
    config: Path | None


class ProbeNeeded(PaddyError):
    """A memory probe that `accum = "auto"` or the time plan needs is not recorded; `request` (once the
    caller knows it) says what to probe."""

    def __init__(self, message: str, request: ProbeRequest | None = None):
        super().__init__(message)
        self.request = request


def recorded_accum(entry: ModelEntry, records: list[ProbeRecord], budget_mib: float) -> int:
    """The accum the newest probe of this entry and budget chose (a measurement before an estimate)."""
    key = probe_key(entry, budget_mib)
    matching = [r for r in records if r.key == key]
    if not matching:
        raise ProbeNeeded(f"no memory probe recorded for {describe_key(key)} within {budget_mib:g} MiB")
    record = max(matching, key=lambda r: (r.kind == MEASURED, r.when))
    if record.accum is None:
        last = record.trials[-1]
        raise PaddyError(
            f"{describe_key(key)} does not fit in {budget_mib:g} MiB even at accum {last.accum} "
            f"(per-step batch {last.step_bs}) per the probe of {record.when}; use a smaller bs, size or model"
        )
    return record.accum


def recorded_speed(entry: ModelEntry, records: list[ProbeRecord], budget_mib: float) -> tuple[float, str]:
    """Training images/s of the entry at its accum, as the newest probe of it timed them, and on what
    (a GPU, or 'this CPU, not a GPU')."""
    key = probe_key(entry, budget_mib)
    matching = sorted((r for r in records if r.key == key), key=lambda r: (r.kind == MEASURED, r.when))
    timed = [t for r in matching for t in r.trials if "images_per_s" in t.parts]  # the best record's last
    if not timed:
        raise ProbeNeeded(f"no timed memory probe of {describe_key(key)} within {budget_mib:g} MiB")
    same_accum = [t for t in timed if t.accum == entry.accum]  # the entry's accum, 'auto' resolved
    trial = (same_accum or timed)[-1]
    return trial.parts["images_per_s"], trial.parts.get("speed_of", "unknown")


def resolve_auto_accum(
    entries: Sequence[ModelEntry], budget_mib: float, out: Path, data: Path | None = None, config: Path | None = None
) -> list[ModelEntry]:
    """The entries with accum 'auto' replaced by the choice probe-memory recorded in `<out>/memory-probes.json`.

    The one place 'auto' is resolved (train, lr-find and run all call it), for every entry at
    once: if any cannot be resolved, nothing trains and each is named; a missing probe is a ProbeNeeded
    whose request names the data (None: the demo) and the `config` the entries came from."""
    records = load_probes(out / PROBES_FILE) if any(e.accum == AUTO for e in entries) else []
    resolved, problems, needed = [], [], []
    for index, entry in enumerate(entries):
        try:
            accum = entry.accum if entry.accum != AUTO else recorded_accum(entry, records, budget_mib)
        except PaddyError as e:
            problems.append(f"entry {index}: --accum auto: {e}" if len(entries) > 1 else f"--accum auto: {e}")
            needed += [entry] if isinstance(e, ProbeNeeded) else []
            continue
        resolved.append(replace(entry, accum=accum))
    if needed:
        raise ProbeNeeded("; ".join(problems), ProbeRequest(needed[0], budget_mib, out, data, config))
    if problems:
        raise PaddyError("; ".join(problems))
    return resolved
