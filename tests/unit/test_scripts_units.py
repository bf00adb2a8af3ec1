"""Searches from scripts, the small parts: workers that never import the parent's main
module, a script's own ``tunecb.search`` call stopped when it is read as a study file,
and the quiet of a search from code (Optuna's verbosity restored, the user's untouched)."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import sys
import warnings
from multiprocessing import spawn

import optuna
import pytest

import tunecb
from tunecb.execution.spawning import main_left_out, start_worker
from tunecb.session.quiet import quiet, quieted
from tunecb.study.study_file import load_study_file

SCRIPT = """
import tunecb

study = tunecb.Study(name="scripted", monitor="val_loss", epochs=3)

@study.data
def load():
    return ([0.0], [0]), ([0.0], [0])

@study.model
def build(trial):
    ...

result = tunecb.search({target}, n_trials=4)
raise SystemExit("the lines after the search call must not run")
"""


def test_spawned_processes_are_not_told_to_import_the_main_module(tmp_path):
    main = sys.modules["__main__"]
    had_spec, had_file = main.__dict__.get("__spec__"), main.__dict__.get("__file__")
    with main_left_out():
        data = spawn.get_preparation_data("tunecb-worker-0")
    assert "init_main_from_path" not in data and "init_main_from_name" not in data
    assert data["sys_path"] == sys.path  # modules beside the script stay importable
    assert spawn.get_preparation_data.__name__ == "get_preparation_data"  # restored
    assert (main.__dict__.get("__spec__"), main.__dict__.get("__file__")) == (had_spec, had_file)


def _write(path: str, text: str) -> None:  # run in the worker, from a blob
    with open(path, "w") as f:
        f.write(text)


@pytest.mark.timeout(120)
def test_a_worker_runs_its_target_by_value(tmp_path):
    out = tmp_path / "out.txt"
    process = start_worker(mp.get_context("spawn"), _write, (str(out), "ran"), "t")
    process.join(60)
    assert process.exitcode == 0 and out.read_text() == "ran"


@pytest.mark.parametrize("target", ["study", "'other.py'"])
def test_a_script_that_searches_at_its_top_is_read_without_searching(tmp_path, target):
    (tmp_path / "other.py").write_text(SCRIPT.format(target="study").replace("scripted", "o"))
    path = tmp_path / "search.py"
    path.write_text(SCRIPT.format(target=target))
    loaded = load_study_file(path)
    name = "scripted" if target == "study" else "o"
    assert loaded.study.settings["name"] == name and loaded.study.build_fn is not None
    assert tunecb.search.__module__ == "tunecb"  # the real one again


def test_quiet_restores_optuna_and_leaves_the_users_logging(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    mine = logging.getLogger("mine")
    mine.setLevel(logging.INFO)
    root_level = logging.getLogger().level
    optuna.logging.set_verbosity(optuna.logging.INFO)
    with quiet():
        assert optuna.logging.get_verbosity() == optuna.logging.WARNING
        assert mine.level == logging.INFO and logging.getLogger().level == root_level
        if "tensorflow" not in sys.modules:
            assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
    assert optuna.logging.get_verbosity() == optuna.logging.INFO


def test_quiet_keeps_a_level_the_user_chose_and_passes_results_and_errors(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")

    @quieted
    def fails():
        raise ValueError("kept")

    with pytest.raises(ValueError, match="kept"):
        fails()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    assert quieted(lambda: 3)() == 3
    with warnings.catch_warnings(record=True) as seen:  # other warnings still show
        warnings.simplefilter("always")
        with quiet():
            warnings.warn("the user's own", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["the user's own"]
