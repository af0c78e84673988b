"""The configs that ship with paddy (package data in paddy/configs/, so an installed wheel has them), found
by name: a config argument that is no file but a built-in's name is that built-in."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from paddy.core.errors import PaddyError

BUILTIN_FOLDER = "configs"  # under the paddy package; a clone's top-level configs/ links to it


@dataclass(frozen=True)
class BuiltinConfig:
    """A shipped config: its name (the file's stem), its file and the first line of its leading comment."""

    name: str
    path: Path
    description: str


def builtin_folder() -> Path:
    """Where the shipped configs are (inside the installed package, or src/paddy/configs in a clone)."""
    return Path(str(resources.files("paddy") / BUILTIN_FOLDER))


def first_comment(path: Path) -> str:
    """A config's one-line description: the first line of its leading `#` comment ('' where it has none)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def builtin_configs() -> list[BuiltinConfig]:
    """Every shipped config, by name."""
    paths = sorted(builtin_folder().glob("*.toml"))
    return [BuiltinConfig(path.stem, path, first_comment(path)) for path in paths]


def is_bare_name(path: Path) -> bool:
    """A name, not a path: one part and no .toml suffix (`tiny`, not `tiny.toml` or `configs/tiny`)."""
    return len(path.parts) == 1 and path.suffix != ".toml"


def resolve_config(path: Path) -> Path:
    """The config file meant by `path`: the file itself, or, for a bare name no file has, the built-in of
    that name. A missing config is refused with the built-in names (a missing path is left to the reader's
    'not found', unless a built-in has its name: then that is the way out)."""
    if path.exists():
        return path
    found = {config.name: config.path for config in builtin_configs()}
    if is_bare_name(path) and str(path) in found:
        return found[str(path)]
    if is_bare_name(path):
        raise PaddyError(f"no config file {path} and no built-in config of that name; built-in: {', '.join(found)}")
    if path.stem in found:
        raise PaddyError(f"config file not found: {path}; the built-in config {path.stem!r} is run by its name alone")
    return path
