"""Shared fixtures: a tiny generated dataset in the paddy layout and one tiny finished run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paddy.cli.app import app
from paddy.core.processes import collect_rarely
from paddy.data.competition import CompetitionData, check_layout
from paddy.data.demo import write_demo_dataset
from paddy.data.images import without_bad_images
from paddy.settings.budget import chosen_budget
from paddy.settings.checks import apply_overrides
from paddy.settings.entry import BadImages, ModelEntry

collect_rarely()  # as the paddy command does: the tests' runs collect their garbage as users' runs do

TINY_CLI = ["--arch", "test_resnet", "--size", "16", "--bs", "4", "--epochs", "1", "--no-pretrained"]


def train_and_submit(root: Path, out: Path, *flags: str) -> tuple[Path, str, Path]:
    """`paddy train --data root` then `paddy submit --dry-run` of its run, through the CLI, each asserted to exit
    0: the run folder, what training printed, and the submission CSV (written into `out`)."""
    runner = CliRunner()
    trained = runner.invoke(app, ["train", "--data", str(root), "--out", str(out), *flags])
    assert trained.exit_code == 0, trained.output
    (run,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    sent = runner.invoke(app, ["submit", "--run", run.name, "--out", str(out), "--dry-run", "--submissions", str(out)])
    assert sent.exit_code == 0, sent.output
    (csv,) = out.glob("submission-*.csv")
    return run, trained.stdout, csv


TINY = {"arch": "test_resnet", "size": (32, 32), "bs": 8, "epochs": 1, "pretrained": False, "seed": 0}


def tiny_entry(**overrides) -> ModelEntry:
    """A model entry that trains in seconds on CPU."""
    return apply_overrides(ModelEntry(), {**TINY, **overrides})


KAGGLE_GPU_MIB = chosen_budget()  # the default budget, as the CLI gives it


def trained(
    entry, data, out, *, budget_mib=KAGGLE_GPU_MIB, bad_images=BadImages.fail, run=None, pictures=False, **options
):
    """One run planned and trained (paddy.training.run's plan_run then train), `options` as for train; its
    pictures only when the test looks at them (matplotlib is most of a tiny run: the CLI's runs draw them)."""
    from paddy.training.run import plan_run, train

    return train(plan_run(entry, data, out, budget_mib, bad_images, run), pictures=pictures, **options)


def train_in_process(plan, **options):
    """The real train() as `run_config`'s train_fn, without DataLoader worker processes or pictures (faster on
    tiny data)."""
    from paddy.training.run import train

    return train(plan, num_workers=0, pictures=False, **options)


def with_callbacks(monkeypatch, *callbacks) -> None:
    """Every learner train() makes gets these callbacks too."""
    import paddy.training.run

    real = paddy.training.run.make_learner

    def make(plan, data, extra, *args, **kwargs):
        return real(plan, data, [*extra, *callbacks], *args, **kwargs)

    monkeypatch.setattr(paddy.training.run, "make_learner", make)


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory) -> Path:
    """A small dataset (10 classes x 6 images, 8 test images) to copy or read."""
    return write_demo_dataset(tmp_path_factory.mktemp("tiny") / "data", per_class=6, n_test=8, size=(32, 24))


@pytest.fixture(scope="session")
def tiny_data(tiny_data_root) -> CompetitionData:
    """The tiny dataset, its images decoded once (train() would otherwise check them on every run)."""
    return without_bad_images(check_layout(tiny_data_root), BadImages.fail)


@pytest.fixture(scope="session")
def finished_run(tiny_data, tmp_path_factory):
    """One real training run on the tiny data, pictures and all (shared: training is the slow part)."""
    return trained(tiny_entry(), tiny_data, tmp_path_factory.mktemp("runs"), num_workers=0, pictures=True)


def without_pictures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs draw no pictures: matplotlib is most of a tiny run (about a second of its 1.7 s), and only the tests
    marked `pictures` look at them. Everything else a run does (train, save, predict) is unchanged."""
    monkeypatch.setattr("paddy.training.run.save_run_plots", lambda *args: [])


@pytest.fixture(autouse=True)
def pictures_where_looked_at(request, monkeypatch):
    """Every run a test makes, the CLI's included, draws its pictures only in a test marked `pictures` (session
    and module fixtures are made before this one, so theirs are drawn unless they say otherwise)."""
    if request.node.get_closest_marker("pictures") is None:
        without_pictures(monkeypatch)


@pytest.fixture(autouse=True)
def isolated_demo(tmp_path, monkeypatch):
    """Never touch the user's demo cache: each test gets its own demo folder."""
    monkeypatch.setenv("PADDY_DEMO_DIR", str(tmp_path / "demo"))


FASTPROGRESS_BAR = re.compile(r"\|[█X-]+\| \d+\.\d+% \[")


def assert_no_redrawn_bars(stdout: str) -> None:
    """fastprogress draws ` |███---| 40.00% [4/10 ...]` (and a `█\\r` probe for every bar it makes);
    a log should hold one line per epoch, nothing redrawn."""
    assert not FASTPROGRESS_BAR.search(stdout), "progress bars redrawn into a log"
    assert "█" not in stdout and "\r" not in stdout, "stray bar characters in a log"


CLOSED_PORT_URL = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused


@pytest.fixture
def no_credentials(tmp_path, monkeypatch):
    """No env credentials, an empty config folder, no proxy for loopback, and Kaggle unreachable."""
    from kagglesdk import kaggle_env

    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_KERNEL_RUN_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle-config"))
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    monkeypatch.setitem(kaggle_env._env_to_endpoint, kaggle_env.KaggleEnv.PROD, CLOSED_PORT_URL)


@pytest.fixture
def credentials(no_credentials, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", "s3cret")


@pytest.fixture
def kaggle_server(monkeypatch):
    """tests/kaggle_server.py's recording Kaggle, which the real kaggle client talks to."""
    from kaggle_server import start_kaggle

    server = start_kaggle(monkeypatch)
    yield server
    server.shutdown()
    server.server_close()
