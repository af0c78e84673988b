"""Options shared by commands, each declared once, and the model options every training command takes
(resolved into a ModelChoice before the command runs). The only place flag names are written, so it
must be longer than other modules: every flag is declared here, once.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from paddy.cli.help import DATA, OUTPUT, TRAINING, hidden, panel_rank, panelled
from paddy.core.errors import PaddyError
from paddy.orchestration.selection import choose_model
from paddy.settings.budget import DEFAULT_BUDGET
from paddy.settings.checks import parse_accum_text
from paddy.settings.competition import MetricName, TargetKind
from paddy.settings.entry import (
    BadImages,
    DecodeChoice,
    Keep,
    OptimizerChoice,
    Precision,
    ResizeMethod,
    Tracker,
    default_of,
)


def defaulting(help_text: str, name: str) -> str:
    """A help text ending with the field's default, read from ModelEntry (never written twice)."""
    value = default_of(name)
    if isinstance(value, tuple):
        value = "x".join(map(str, value))
    elif isinstance(value, bool):
        value = "on" if value else "off"
    return f"{help_text} (default {value})."


def flag_parser(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """A settings parser as a flag's parser: its PaddyError becomes typer's usage error (exit 2)."""

    def parser(text: str) -> Any:
        try:
            return parse(text)
        except PaddyError as e:
            raise typer.BadParameter(str(e)) from None

    return parser


# Options shared by commands, each declared once.
DataOption = Annotated[
    Optional[Path],
    typer.Option(
        help="Competition folder (default: the config's, /kaggle/input/<competition>, else the demo).",
        rich_help_panel=DATA,
    ),
]


OutDir = Annotated[Path, typer.Option("--out", help="Folder of run folders.", rich_help_panel=OUTPUT)]


Budget = Annotated[
    Optional[str],
    typer.Option(
        help=f"GPU memory for --accum auto: 16280 (MiB), 16280MiB, 24GiB, 16GB (default {DEFAULT_BUDGET}).",
        rich_help_panel=TRAINING,
    ),
]


BadImagesOption = Annotated[
    BadImages, typer.Option(help="Corrupt training images: fail, or skip them.", rich_help_panel=DATA)
]


KeepCheckpoint = Annotated[
    bool,
    typer.Option(
        help="Keep checkpoint.pt in a finished run (it is removed at the end otherwise).", rich_help_panel=OUTPUT
    ),
]


DEFAULT_OUT = Path("runs")


OptionalCompetition = Annotated[
    Optional[str],
    typer.Option(
        "--competition",
        help="Kaggle competition slug (default: the config's or runs' own, else paddy-disease-classification).",
    ),
]


MODEL_OPTIONS: dict[str, Any] = {
    "data": DataOption,
    "config": Annotated[
        Optional[Path], typer.Option(help="TOML config, or a built-in's name (paddy configs); flags override it.")
    ],
    "entry": Annotated[Optional[str], typer.Option(help="Which models entry of --config: its index (from 0) or arch.")],
    "arch": Annotated[Optional[str], typer.Option(help=defaulting("timm architecture name", "arch"))],
    "size": Annotated[
        Optional[str], typer.Option(help=defaulting("Training size: N or HxW, e.g. 224 or 288x224", "size"))
    ],
    "item": Annotated[Optional[ResizeMethod], typer.Option(help=defaulting("Item resize method", "item"))],
    "item_size": Annotated[
        Optional[str], typer.Option(help="Item resize before augmentation: N or HxW (default twice --size).")
    ],
    "decode": Annotated[
        Optional[DecodeChoice], typer.Option(help=defaulting("Image decoder before the uint8 item resize", "decode"))
    ],
    "accum": Annotated[
        Optional[str],
        typer.Option(
            parser=flag_parser(parse_accum_text),
            metavar="<int|auto>",
            help=defaulting("Gradient accumulation factor (divides bs), or 'auto' from probe-memory", "accum"),
        ),
    ],
    "bs": Annotated[Optional[int], typer.Option(help=defaulting("Effective batch size", "bs"))],
    "epochs": Annotated[Optional[int], typer.Option(help=defaulting("Epochs", "epochs"))],
    "lr": Annotated[Optional[float], typer.Option(help=defaulting("Learning rate", "lr"))],
    "finetune": Annotated[
        Optional[bool],
        typer.Option(
            "--finetune/--one-cycle", help=defaulting("fine_tune, or fit_one_cycle of every layer", "finetune")
        ),
    ],
    "seed": Annotated[
        Optional[int], typer.Option(help="Random seed; unset draws one (a new split each run) and records it.")
    ],
    "valid_pct": Annotated[
        Optional[float], typer.Option(help=defaulting("Fraction of training images held out", "valid_pct"))
    ],
    "precision": Annotated[
        Optional[Precision],
        typer.Option(help=defaulting("auto (fp16 on CUDA, fp32 on CPU), fp16 or fp32", "precision")),
    ],
    "pretrained": Annotated[
        Optional[bool],
        typer.Option("--pretrained/--no-pretrained", help=defaulting("Start from pretrained weights", "pretrained")),
    ],
    "pretrained_file": Annotated[
        Optional[Path], typer.Option(help="Local pretrained weights (.safetensors or .pth) for offline use.")
    ],
    "multi_target": Annotated[
        Optional[str],
        typer.Option(help="Also predict this train.csv column (e.g. variety); loss adds both cross-entropies."),
    ],
    "label_smoothing": Annotated[
        Optional[float], typer.Option(help="Label smoothing epsilon in [0, 1) (fastai LabelSmoothingCrossEntropy).")
    ],
    "mixup": Annotated[Optional[float], typer.Option(help="MixUp alpha (> 0) (fastai MixUp callback).")],
    "folds": Annotated[
        Optional[int],
        typer.Option(help="k-fold CV: one run per fold on stratified folds (instead of --valid-pct), with OOF."),
    ],
    "opt": Annotated[
        Optional[OptimizerChoice],
        typer.Option(help=defaulting("Optimizer: fastai's Adam, or torch's AdamW (foreach or fused kernels)", "opt")),
    ],
    "aug": Annotated[
        Optional[bool],
        typer.Option("--aug/--no-aug", help=defaulting("Batch augmentation; --no-aug resizes to --size only", "aug")),
    ],
    "flip": Annotated[Optional[bool], typer.Option("--flip/--no-flip", help=defaulting("Left-right flips", "flip"))],
    "flip_vert": Annotated[
        Optional[bool],
        typer.Option("--flip-vert/--no-flip-vert", help=defaulting("Up-down flips and 90-degree turns", "flip_vert")),
    ],
    "max_rotate": Annotated[Optional[float], typer.Option(help=defaulting("Largest rotation, degrees", "max_rotate"))],
    "max_zoom": Annotated[Optional[float], typer.Option(help=defaulting("Largest zoom (1: none)", "max_zoom"))],
    "max_warp": Annotated[Optional[float], typer.Option(help=defaulting("Largest perspective warp", "max_warp"))],
    "max_lighting": Annotated[
        Optional[float], typer.Option(help=defaulting("Largest brightness/contrast change", "max_lighting"))
    ],
    "min_scale": Annotated[
        Optional[float], typer.Option(help=defaulting("Smallest share of the image a random crop keeps", "min_scale"))
    ],
    "sizes": Annotated[
        Optional[str],
        typer.Option(help="Progressive resizing: sizes smallest first, ending at --size, e.g. 128,192,256."),
    ],
    "ema": Annotated[
        Optional[float],
        typer.Option(help="Average the weights (decay, e.g. 0.9998): validated, predicted with and saved."),
    ],
    "keep": Annotated[
        Optional[Keep],
        typer.Option(help=defaulting("Epoch whose weights are saved and predict: best on the metric, or last", "keep")),
    ],
    "patience": Annotated[
        Optional[int],
        typer.Option(help="Early stopping: end the run after this many epochs without a better metric (default none)."),
    ],
    "gpus": Annotated[
        Optional[int],
        typer.Option(help=defaulting("GPUs training this one model data-parallel (bs is shared out)", "gpus")),
    ],
    "trackers": Annotated[
        Optional[list[Tracker]],
        typer.Option(
            "--tracker",
            help="Log to an experiment tracker, offline (repeatable): tensorboard, wandb, mlflow or csv (default none)",
        ),
    ],
    "fold": Annotated[Optional[int], typer.Option(help="With --folds: train only this fold (1..folds).")],
    "channels_last": Annotated[
        Optional[bool],
        typer.Option(
            "--channels-last/--no-channels-last",
            help=defaulting("Model and batches in channels_last memory format (convolutional models)", "channels_last"),
        ),
    ],
    "compile": Annotated[
        Optional[bool],
        typer.Option("--compile/--no-compile", help=defaulting("torch.compile the model", "compile")),
    ],
    "fold_seed": Annotated[
        Optional[int], typer.Option(help=defaulting("Seed that draws the folds (shared by every entry)", "fold_seed"))
    ],
}


SELECTION = ("data", "config", "entry")


MODEL_OPTIONS = panelled(MODEL_OPTIONS)


# The competition description's common keys ([competition] in a config); what none gives is inferred.
COMPETITION_OPTIONS: dict[str, Any] = {
    "competition": OptionalCompetition,
    "kind": Annotated[Optional[TargetKind], typer.Option(help="Target kind (default: inferred from the labels).")],
    "metric": Annotated[
        Optional[MetricName],
        typer.Option(help="The competition's metric (default: the competition's, else the kind's)."),
    ],
    "labels_file": Annotated[
        Optional[str],
        typer.Option(
            help="Labels CSV in the data folder (default: train.csv, labels.csv, train_labels.csv), or COCO-style "
            "metadata JSON (default: train_metadata.json, train/metadata.json, ...)."
        ),
    ],
    "id_column": Annotated[
        Optional[str], typer.Option(help="Image id column of the labels file (default: its first).")
    ],
    "label_column": Annotated[
        Optional[list[str]], typer.Option(help="Label column, or one per class for one-hot labels (repeat the flag).")
    ],
    "label_pattern": Annotated[
        Optional[str],
        typer.Option(help="Labels in the training file names: a regex whose group is the label (e.g. '^(\\w+)\\.')."),
    ],
    "group_column": Annotated[
        Optional[str], typer.Option(help="Column whose groups no fold splits (e.g. patient_id).")
    ],
    "train_folder": Annotated[
        Optional[str], typer.Option(help="Training image folder in the data folder (default: found, e.g. train/).")
    ],
    "test_folder": Annotated[
        Optional[list[str]], typer.Option(help="Test image folder (default: found); repeat it for a split test set.")
    ],
    "test_metadata": Annotated[
        Optional[str],
        typer.Option(help="JSON listing the test images by the sample's ids (default: found: test_metadata.json)."),
    ],
    "fold_column": Annotated[Optional[str], typer.Option(help="Column holding your own folds.")],
}
COMPETITION_OPTIONS = panelled(COMPETITION_OPTIONS, DATA)
COMPETITION_KEYS = {"competition": "slug", "label_column": "label_columns"}  # flag name -> description key


def competition_flags(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The competition options popped from a command's arguments, as description keys."""
    given = {name: kwargs.pop(name) for name in COMPETITION_OPTIONS}
    return {COMPETITION_KEYS.get(name, name): value for name, value in given.items() if value}


def competition_args(competition: dict[str, Any]) -> list[str]:
    """The flags that give `competition` (description keys, as competition_flags returns them) again: those of a
    pool worker's command line."""
    flag_of = {key: name for name, key in COMPETITION_KEYS.items()}
    args: list[str] = []
    for key, value in competition.items():
        flag = "--" + flag_of.get(key, key).replace("_", "-")
        for one in value if isinstance(value, (list, tuple)) else [value]:
            args += [flag, str(one)]
    return args


def signed(wrapper: Callable[..., Any], command: Callable[..., Any], added: dict[str, Any], replaced: str) -> Any:
    """`wrapper` with `command`'s signature, the `added` options in place of its `replaced` parameter (what the
    wrapper makes of them), for typer to read."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != replaced]
    kind = inspect.Parameter.KEYWORD_ONLY
    extra = [inspect.Parameter(name, kind, default=None, annotation=option) for name, option in added.items()]
    positional = [p for p in own if p.default is inspect.Parameter.empty]
    keywords = sorted([p for p in [*own, *extra] if p not in positional], key=panel_rank)  # as --help shows them
    parameters = [*positional, *(p.replace(kind=kind) for p in keywords)]
    wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper


def with_competition_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command COMPETITION_OPTIONS; it receives the given ones as `competition` (description keys)."""

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        return command(competition=competition_flags(kwargs), **kwargs)

    return signed(wrapper, command, COMPETITION_OPTIONS, "competition")


def with_model_options(
    command: Callable[..., Any], whole_config: bool = False, ignored: tuple[str, ...] = ()
) -> Callable[..., Any]:
    """Give a command all of MODEL_OPTIONS; it receives them resolved, as `model: ModelChoice` (with its
    own `budget` option, if it has one, applied). Those it `ignored` (settings that change nothing it does)
    are not listed in its help but still taken, so a `paddy train` command line runs as it is. Print the
    choice's warnings and note with paddy.cli.output.announce."""
    shown = {name: hidden(annotation) if name in ignored else annotation for name, annotation in MODEL_OPTIONS.items()}

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        options = {name: kwargs.pop(name) for name in MODEL_OPTIONS}
        if options["entry"] is not None and options["config"] is None:
            raise PaddyError(f"--entry {options['entry']} picks an entry of a config: give --config too")
        flags = {k: v for k, v in options.items() if k not in SELECTION}
        selection = {k: options[k] for k in SELECTION}
        budget, competition = kwargs.pop("budget", None), competition_flags(kwargs)
        choice = choose_model(flags, **selection, budget=budget, whole_config=whole_config, competition=competition)
        return command(model=choice, **kwargs)

    return signed(wrapper, command, {**shown, **COMPETITION_OPTIONS}, "model")


def takes_budget(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the shared --budget option; with_model_options hands it to choose_model."""
    signature = inspect.signature(command, eval_str=True)
    budget = inspect.Parameter("budget", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Budget)
    command.__signature__ = signature.replace(parameters=[*signature.parameters.values(), budget])  # type: ignore
    return command
