"""Typed training settings, loadable from TOML files (or a built-in config by name) and overridable by CLI flags.

Settings are layered: built-in defaults, then the demo preset (on demo data paddy made),
then a config file entry, then CLI flags. Every layer is a plain dict of overrides so the
same typed validation runs whatever the source: a value of the wrong type is an error
naming its field, never coerced.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from paddy.core.errors import PaddyError
from paddy.settings.builtin_configs import resolve_config
from paddy.settings.checks import entry_problems, override_problems, unknown_key_problem
from paddy.settings.competition import CompetitionSpec, overridden
from paddy.settings.entry import ModelEntry
from paddy.settings.legacy import RENAMED_KEYS, renamed_key_warning

CONFIG_KEYS = ("data", "budget", "competition", "defaults", "models")


@dataclass(frozen=True)
class EnsembleConfig:
    """A TOML config: shared defaults plus a list of model entries."""

    models: list[ModelEntry]
    data: Path | None = None
    budget: str | None = None
    competition: CompetitionSpec = CompetitionSpec()  # what the data is; left-out keys are inferred from it
    source: Path | None = field(default=None, compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)  # e.g. old key names still read

    @property
    def name(self) -> str:
        """The config's name in run folder names."""
        return self.source.stem if self.source else "config"


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning I/O, encoding and syntax problems into one clear line."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PaddyError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise PaddyError(f"config {path} is a folder, not a TOML file") from None
    except UnicodeDecodeError:
        raise PaddyError(f"cannot read config {path}: not UTF-8 text") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise PaddyError(f"cannot read config {path}: {e}") from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise PaddyError(f"cannot read config {path}: values nested too deeply") from None


def renamed_keys(table: dict[str, Any], where: str, warnings: list[str]) -> dict[str, Any]:
    """`table` with old key names replaced by their new ones, each noted in `warnings`."""
    renamed = {}
    for key, value in table.items():
        new = RENAMED_KEYS.get(key)
        if new and new in table:
            raise PaddyError(f"{where}: both {key!r} and its new name {new!r} are set; keep {new!r}")
        if new:
            warnings.append(renamed_key_warning(where, key))
        renamed[new or key] = value
    return renamed


def config_table(raw: dict[str, Any], key: str, kind: type, path: Path) -> Any:
    """A top-level value of the expected TOML kind ([defaults] a table, [[models]] a list of tables)."""
    value = raw.get(key, kind())
    if not isinstance(value, kind) or (kind is list and not all(isinstance(m, dict) for m in value)):
        shape = f"a [{key}] table" if kind is dict else "[[models]] tables"
        raise PaddyError(f"{path}: {key} must be {shape}, not {type(value).__name__}")
    return value


def top_level_problems(raw: dict[str, Any]) -> list[str]:
    """Unknown top-level keys or sections (a misspelled [[model]] must not fall back to defaults)."""
    problems = [unknown_key_problem(key, CONFIG_KEYS, "key or section") for key in raw if key not in CONFIG_KEYS]
    for key in ("data", "budget"):
        if key in raw and not isinstance(raw[key], (str, int, float) if key == "budget" else str):
            problems.append(f"{key}: {raw[key]!r} is not text")
    return problems


EntryCheck = Callable[[ModelEntry], list[str]]


def load_config(path: Path, base: ModelEntry = ModelEntry(), check: EntryCheck = entry_problems) -> EnsembleConfig:
    """Load and fully validate a config; every problem is reported with its entry and field. A command
    that trains passes `check` = paddy.training.archs.trainable_problems, which also asks timm whether
    each arch exists (reading a config to ensemble or predict needs no timm). `path` may be a built-in
    config's name."""
    path = resolve_config(path)
    raw = read_toml(path)
    if problems := top_level_problems(raw):
        raise PaddyError(f"{path}: " + "; ".join(problems))
    warnings: list[str] = []
    defaults = renamed_keys(config_table(raw, "defaults", dict, path), "[defaults]", warnings)
    models = config_table(raw, "models", list, path)
    if not models:
        raise PaddyError(f"{path}: needs at least one [[models]] entry")
    parsed_defaults, problems = override_problems(defaults)
    if problems:
        raise PaddyError(f"{path} [defaults]: " + "; ".join(problems))
    shared = replace(base, **parsed_defaults)
    entries = []
    for i, model in enumerate(models):
        parsed, bad = override_problems(renamed_keys(model, f"models[{i}]", warnings))
        entry = replace(shared, **parsed)
        problems += [f"models[{i}] ({entry.arch}) {p}" for p in bad + check(entry)]
        entries.append(entry)
    if problems:
        raise PaddyError(f"{path}: " + "; ".join(problems))
    data = raw.get("data")
    return EnsembleConfig(
        models=entries,
        data=Path(data).expanduser() if data else None,
        budget=str(raw["budget"]) if "budget" in raw else None,
        competition=overridden(
            CompetitionSpec(), config_table(raw, "competition", dict, path), f"{path} [competition]"
        ),
        source=path,
        warnings=tuple(warnings),
    )


def select_entry(config: EnsembleConfig, which: str | None) -> ModelEntry:
    """Pick one entry of a config by index or arch name (the only one if there is one)."""
    if which is None:
        if len(config.models) == 1:
            return config.models[0]
        raise PaddyError(f"{config.source} has {len(config.models)} entries: choose one with --entry INDEX|ARCH")
    if which.isdigit() and int(which) < len(config.models):
        return config.models[int(which)]
    matches = [m for m in config.models if m.arch == which]
    if not matches:
        raise PaddyError(f"no entry {which!r} in {config.source}")
    return matches[0]
