"""Which model entries and which data a command works on: the layering of a config entry (or
the demo preset on demo data, or the defaults) under the command-line flags."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paddy.data.competition import CompetitionData, data_folder, resolve_data
from paddy.data.demo import ensure_demo_dataset
from paddy.settings.budget import chosen_budget
from paddy.settings.checks import apply_overrides
from paddy.settings.competition import CompetitionSpec, overridden
from paddy.settings.config_file import EnsembleConfig, load_config, select_entry
from paddy.settings.entry import DEMO_PRESET, ModelEntry
from paddy.training.archs import trainable_problems


@dataclass(frozen=True)
class ModelChoice:
    """The model entries a command works on (flags applied), the checked data and the GPU budget."""

    entries: tuple[ModelEntry, ...]  # one, or with whole_config every entry of the config
    data: CompetitionData
    budget_mib: float
    note: str | None = None  # what was chosen for the user, e.g. the demo dataset
    warnings: tuple[str, ...] = ()  # e.g. old config key names
    flags_given: tuple[str, ...] = ()  # the model settings (and data, config, entry) given on the command line

    @property
    def entry(self) -> ModelEntry:
        return self.entries[0]


def choose_model(
    flags: dict[str, Any],
    data: Path | None = None,
    config: Path | None = None,
    entry: str | None = None,
    budget: str | None = None,
    whole_config: bool = False,
    competition: dict[str, Any] | None = None,
) -> ModelChoice:
    """Layer the settings: config entry (or the demo preset on demo data, or defaults), then flags; the
    competition description likewise (the config's [competition], then `competition` flags).

    With `whole_config`, a config without `entry` gives all its entries (an ensemble). The
    budget is the flag's, else the config's, else a Kaggle GPU's."""
    ensemble = load_config(config, check=trainable_problems) if config else None
    found = data_described(data, ensemble, competition)
    note = None
    if ensemble and whole_config and entry is None:
        bases = ensemble.models
    elif ensemble:
        bases = [select_entry(ensemble, entry)]
    elif found.made_by_paddy:
        bases = [apply_overrides(ModelEntry(), DEMO_PRESET)]
        where = "No --data given: using the demo dataset at" if found.is_demo else "Demo data made by paddy:"
        note = f"{where} {found.root} with {demo_settings(flags)}"
    else:
        bases = [ModelEntry()]
    entries = tuple(apply_overrides(base, flags) for base in bases)
    budget_mib = chosen_budget(budget, ensemble.budget if ensemble else None)
    chosen = {**flags, "data": data, "config": config, "entry": entry}
    given = tuple(name for name, value in chosen.items() if value is not None)
    return ModelChoice(entries, found, budget_mib, note, ensemble.warnings if ensemble else (), given)


def demo_settings(flags: dict[str, Any]) -> str:
    """The demo preset as it trains: its settings, those given over them marked."""
    given = {name: value for name, value in flags.items() if value is not None}

    def shown(name: str, value: Any) -> str:
        text = "x".join(map(str, value)) if isinstance(value, tuple) else str(value)
        return f"{name} {text} (given)" if name in given else f"{name} {text}"

    return "the demo preset: " + ", ".join(shown(name, given.get(name, v)) for name, v in DEMO_PRESET.items())


@dataclass(frozen=True)
class ConfigChoice:
    """A whole config (`paddy run`), the checked data it trains on and the GPU budget."""

    config: EnsembleConfig
    data: CompetitionData
    budget_mib: float


def choose_config(
    config: Path, data: Path | None = None, budget: str | None = None, competition: dict[str, Any] | None = None
) -> ConfigChoice:
    """The config, its data (the flag's, else the config's, Kaggle's or the demo) and budget (likewise)."""
    ensemble = load_config(config, check=trainable_problems)
    found = data_described(data, ensemble, competition)
    return ConfigChoice(ensemble, found, chosen_budget(budget, ensemble.budget))


def data_described(
    data: Path | None, ensemble: EnsembleConfig | None, competition: dict[str, Any] | None
) -> CompetitionData:
    """The checked data a command reads (the flag's, else the config's, Kaggle's or the demo) as the config's
    [competition] table and the competition flags describe it."""
    return resolve_data(given_data(data, ensemble), described(ensemble, competition))


def given_data(data: Path | None, ensemble: EnsembleConfig | None) -> Path | None:
    """The data folder the flag gives, else the config's; None: Kaggle's or the demo."""
    return data or (ensemble.data if ensemble else None)


def data_source(
    data: Path | None, ensemble: EnsembleConfig | None, competition: dict[str, Any] | None
) -> tuple[Path, CompetitionSpec]:
    """The data folder a command reads (as data_described finds it) and its description, unchecked: for a
    command that checks the folder as it reads it (presize, which also takes pixel CSVs no check reads)."""
    spec = described(ensemble, competition)
    return data_folder(given_data(data, ensemble), spec) or ensure_demo_dataset(), spec


def described(ensemble: EnsembleConfig | None, competition: dict[str, Any] | None) -> CompetitionSpec:
    """The competition description: the config's [competition] table with the given keys (flags) over it."""
    base = ensemble.competition if ensemble else CompetitionSpec()
    given = {key: value for key, value in (competition or {}).items() if value is not None}
    return overridden(base, given, "the competition flags") if given else base
