"""How `--help` reads: options grouped in panels (data, model, training, augmentation, output), flags
shown without a metavar, and every command's help formatted so."""

from __future__ import annotations

import copy
from typing import Annotated, Any, get_args

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

DATA, MODEL, TRAINING, AUGMENTATION, OUTPUT = "Data", "Model", "Training", "Augmentation", "Output"


def in_panel(annotation: Any, panel: str) -> Any:
    """An option's annotation (Annotated[type, typer.Option(...)]) shown in `panel` of --help."""
    kind, info = get_args(annotation)
    info = copy.copy(info)
    info.rich_help_panel = panel
    return Annotated[kind, info]


def without_flag_metavars(command, ctx) -> None:
    """Flags (--x/--no-x, --force, --help) take no value: show them without typer's `<bool>` metavar."""
    for param in command.get_params(ctx):
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""


class PaddyCommand(TyperCommand):
    """A command whose help shows flags without a metavar."""

    def format_help(self, ctx, formatter) -> None:
        without_flag_metavars(self, ctx)
        super().format_help(ctx, formatter)


class PaddyGroup(TyperGroup):
    """A command group whose own help shows flags (--help, --version) without a metavar, too."""

    def format_help(self, ctx, formatter) -> None:
        without_flag_metavars(self, ctx)
        super().format_help(ctx, formatter)


def use_paddy_help(app: typer.Typer) -> None:
    """Every command of `app` and of the groups joined to it formats its help as PaddyCommand does (a
    group's own help: make it with `typer.Typer(cls=PaddyGroup)`)."""
    for command in app.registered_commands:
        if command.cls in (None, TyperCommand):
            command.cls = PaddyCommand
    for group in app.registered_groups:
        if group.typer_instance is not None:
            use_paddy_help(group.typer_instance)
