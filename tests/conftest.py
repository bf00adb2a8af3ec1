"""Shared fixtures: tiny study files on real (bundled) data, and the CLI run in-process."""

from __future__ import annotations

import json
import os
import signal
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pgfixture"]  # a real PostgreSQL server: tests/pgfixture.py

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Searches run their trials in the test's process unless a test asks for workers (--jobs N,
# or TUNECB_JOBS removed for --jobs auto): tests/e2e/test_auto_jobs.py tests the default.
os.environ["TUNECB_JOBS"] = "0"
# A test sends Ctrl-C (SIGINT) to the searches it starts. Started in the background of a
# shell without job control (`pytest ... &`), pytest would ignore SIGINT, and a process
# inherits an ignored signal through exec: every search it started would ignore Ctrl-C and
# those tests would fail for the way pytest was launched. Back to Python's own handler (the
# searches then start with the default).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

STUDY_TEMPLATE = """
import keras
import numpy as np
from sklearn.datasets import load_digits

import tunecb

study = tunecb.Study({settings})


@study.data
def load():
    x, y = load_digits(return_X_y=True)
    x = (x[:500] / 16.0).astype("float32")
    y = y[:500]
    return (x[:400], y[:400]), (x[400:], y[400:])


@study.model
def build(trial):
    lr = trial.suggest_float("lr", 1e-3, 3e-2, log=True)
    units = trial.suggest_int("units", 8, 32)
{build_extra}
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(units, activation="relu"),
{layers_extra}
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model

{extra}
"""

DEFAULT_SETTINGS = (
    'monitor="val_accuracy", epochs=3, batch_size=64, n_trials=3, seed=0, pruner="none"'
)


def write_study(
    folder: Path,
    name: str = "tiny",
    settings: str = DEFAULT_SETTINGS,
    build_extra: str = "",
    layers_extra: str = "",
    extra: str = "",
) -> Path:
    """Write a tiny study file (an MLP on 500 bundled digits) and return its path."""
    path = folder / f"{name}.py"
    path.write_text(
        STUDY_TEMPLATE.format(
            settings=settings,
            build_extra=textwrap.indent(textwrap.dedent(build_extra), "    "),
            layers_extra=textwrap.indent(textwrap.dedent(layers_extra), "        "),
            extra=textwrap.dedent(extra),
        )
    )
    return path


@pytest.fixture(autouse=True)
def _sys_path_as_it_was():
    """A study file read in this process puts its folder first on ``sys.path`` (its helpers
    import from there, as a script's do); a test's folder must not outlive the test: its
    ``copy.py`` would shadow the standard library for every later test and the worker
    processes they spawn (which inherit ``sys.path``)."""
    import sys

    saved = list(sys.path)
    yield
    sys.path[:] = saved


@pytest.fixture
def memory_path(tmp_path_factory):
    """A folder in memory (/dev/shm) when there is one: SQLite's commits wait for no disk
    (seconds per test on a shared machine's disk otherwise); removed after the test."""
    import shutil
    import tempfile

    if not Path("/dev/shm").is_dir():
        yield tmp_path_factory.mktemp("db")
        return
    path = Path(tempfile.mkdtemp(prefix="tunecb-test-", dir="/dev/shm"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def study_file(tmp_path: Path):
    """``study_file(**template_args)`` writes a study file in the test's folder."""

    def make(**kwargs) -> Path:
        return write_study(tmp_path, **kwargs)

    return make


@pytest.fixture
def cli(capsys):
    """Run ``tunecb`` in this process: ``cli(*args) -> (exit_code, stdout, stderr)``."""
    from tunecb.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def trial_json(results: Path, study: str, number: int) -> dict:
    return json.loads((results / study / "trials" / str(number) / "trial.json").read_text())


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory) -> Path:
    """A finished 4-trial search (results/<study> folder), shared by report/load tests."""
    from tunecb.cli import main

    folder = tmp_path_factory.mktemp("finished")
    path = write_study(
        folder, name="fin", settings=DEFAULT_SETTINGS.replace("n_trials=3", "n_trials=4")
    )
    code = main(["search", str(path), "--results", str(folder / "results")])
    assert code == 0
    return folder / "results" / "fin"


@pytest.fixture(scope="session")
def dask_cluster():
    """One real dask.distributed LocalCluster (2 worker processes) for every Dask test of a
    pytest process: its workers import TensorFlow once, not once per test file."""
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None,
    ) as local:  # fmt: skip
        yield local


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Keep the tests that share a costly fixture in one pytest process, so that it is built
    once (pyproject runs ``-n 2`` with ``--dist loadgroup``; every other test is scheduled
    on its own): a module-scoped fixture's tests by module (a search, an MLflow server),
    the tests of the shared Dask cluster together. Without ``-n`` the marks do nothing."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:  # doctests
            continue
        module_scoped = any(
            defs and defs[-1].scope == "module" for defs in info.name2fixturedefs.values()
        )
        if module_scoped:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
        elif "dask_cluster" in info.names_closure:
            item.add_marker(pytest.mark.xdist_group("dask_cluster"))
