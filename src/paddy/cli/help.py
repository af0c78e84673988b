"""How `--help` reads: options grouped in panels (data, model, training, augmentation, output), flags
shown without a metavar, and every command's help formatted so."""

from __future__ import annotations

import copy
import inspect
from typing import Annotated, Any, get_args

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

DATA, MODEL, TRAINING, AUGMENTATION, OUTPUT = "Data", "Model", "Training", "Augmentation", "Output"


PANEL_ORDER = (DATA, MODEL, TRAINING, AUGMENTATION, OUTPUT)


def panel_rank(parameter: inspect.Parameter) -> int:
    """Where a command's parameter shows in --help: the panels in PANEL_ORDER, then the rest."""
    info = next(iter(getattr(parameter.annotation, "__metadata__", ())), None)
    panel = getattr(info, "rich_help_panel", None)
    return PANEL_ORDER.index(panel) if panel in PANEL_ORDER else len(PANEL_ORDER)


def with_info(annotation: Any, **changes: Any) -> Any:
    """An option's annotation (Annotated[type, typer.Option(...)]) with some of its OptionInfo changed."""
    kind, info = get_args(annotation)
    info = copy.copy(info)
    for name, value in changes.items():
        setattr(info, name, value)
    return Annotated[kind, info]


def in_panel(annotation: Any, panel: str) -> Any:
    """An option shown in `panel` of --help."""
    return with_info(annotation, rich_help_panel=panel)


def hidden(annotation: Any) -> Any:
    """An option taken but not listed in --help."""
    return with_info(annotation, hidden=True)


# Where each model option shows in --help (the competition options are all data; one not named here: training).
MODEL_PANELS = {
    DATA: ("data", "config", "entry", "item", "item_size", "decode", "valid_pct", "folds", "fold", "fold_seed"),
    MODEL: ("arch", "size", "pretrained", "pretrained_file", "multi_target", "channels_last", "compile"),
    TRAINING: (
        *("accum", "bs", "epochs", "lr", "finetune", "seed", "opt", "precision"),
        *("label_smoothing", "mixup", "sizes", "ema", "gpus"),
    ),
    AUGMENTATION: ("aug", "flip", "flip_vert", "max_rotate", "max_zoom", "max_warp", "max_lighting", "min_scale"),
    OUTPUT: ("trackers",),
}


def panelled(options: dict[str, Any], panel: str | None = None) -> dict[str, Any]:
    """Options (name -> annotation) each in its panel: `panel`, else its MODEL_PANELS one, else training."""
    found = {name: owner for owner, names in MODEL_PANELS.items() for name in names}
    return {name: in_panel(option, panel or found.get(name, TRAINING)) for name, option in options.items()}


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


def one_line_summaries(group: TyperGroup) -> None:
    """A group's list of commands shows each one's first docstring paragraph as one line, wrapped only at the
    terminal's edge: Typer's rich mode keeps the docstring's own line breaks there, which cut the list's
    sentences mid-way ("... fold, valid" / "error, time")."""
    for command in group.commands.values():
        if command.short_help is None and command.help:
            command.short_help = " ".join(inspect.cleandoc(command.help).split("\n\n")[0].split())


class PaddyGroup(TyperGroup):
    """A command group whose own help shows flags (--help, --version) without a metavar, too, and each
    command's summary as one line."""

    def format_help(self, ctx, formatter) -> None:
        without_flag_metavars(self, ctx)
        one_line_summaries(self)
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
