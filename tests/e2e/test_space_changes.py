"""A study continued with a changed search space (issue 22): a change Optuna cannot store
stops the search with one line before any trial is counted; a change it can store is
described; a second study file with the same name does not silently continue the study.

One real 1-trial search is shared; each change then only builds (no fit) or fits one
1-epoch trial."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from conftest import DEFAULT_SETTINGS, write_study

from tunecb.oracle import budget
from tunecb.storage.urls import open_storage

SETTINGS = DEFAULT_SETTINGS.replace("epochs=3", "epochs=1").replace("n_trials=3", "n_trials=1")
SETTINGS += ', lr_schedule="search"'  # tunecb's own suggest_categorical("lr_schedule", ...)
FEWER_SCHEDULES = '__import__("tunecb.study.schedules").study.schedules.Searched(("none", "step"))'
EXTRA = 'act = trial.suggest_categorical("act", ["relu", "tanh"])'


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> Path:
    """A finished 1-trial study ``tiny`` (lr log, units int, act relu/tanh)."""
    from tunecb.cli import main

    folder = tmp_path_factory.mktemp("space")
    path = write_study(folder, settings=SETTINGS, build_extra=EXTRA)
    assert main(["search", str(path), "--results", str(folder / "results")]) == 0
    return folder


@contextlib.contextmanager
def _changed(first_run: Path, tmp_path: Path, old: str, new: str) -> Iterator[tuple[Path, Path]]:
    """The first run's study file with ``old`` replaced by ``new`` (put back afterwards: the
    study remembers the file that began it), and a copy of its results for one test."""
    shutil.copytree(first_run / "results", tmp_path / "results")
    path = first_run / "tiny.py"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    try:
        yield path, tmp_path / "results"
    finally:
        path.write_text(text)


def _trials(results: Path) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(None, results / "tiny")
    return optuna.load_study(study_name="tiny", storage=storage).get_trials()


@pytest.mark.parametrize(
    ("old", "new", "parameter"),
    [
        ("1e-3, 3e-2, log=True", "1e-3, 3e-2", "lr"),  # the log flag dropped
        ('["relu", "tanh"]', '["relu", "tanh", "elu"]', "act"),  # a choice added
        ('suggest_int("units", 8, 32)', 'suggest_float("units", 8, 32)', "units"),  # int->float
        ('"search"', FEWER_SCHEDULES, "lr_schedule"),  # the searched schedules changed
    ],
    ids=["log-dropped", "choice-added", "int-to-float", "schedules"],
)
def test_a_change_optuna_cannot_store_stops_before_any_trial_counts(
    first_run, tmp_path, cli, old, new, parameter
):
    with _changed(first_run, tmp_path, old, new) as (path, results):
        code, out, err = cli("search", path, "--results", results, "--n-trials", "4")
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if "error:" in line]
    assert len(lines) == 1, err
    assert f"parameter {parameter!r} was" in lines[0]
    assert f"--study-name NEW --warm-start {results / 'tiny'}" in lines[0]
    assert "Traceback" not in err
    trials = _trials(results)
    assert budget.finished(trials) == 1  # the first run's trial only: nothing was spent
    assert budget.left(trials, 4) == 3


@pytest.mark.slow  # two worker processes, each importing Keras
def test_a_change_optuna_cannot_store_is_refused_once_with_two_worker_processes(
    first_run, tmp_path, cli
):
    with _changed(first_run, tmp_path, "1e-3, 3e-2, log=True", "1e-3, 3e-2") as (path, results):
        code, out, err = cli("search", path, "--results", results, "--n-trials", "4",
                             "--jobs", "2")  # fmt: skip
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if "error:" in line]
    assert len(lines) == 1, err  # one line, though both workers may have met the change
    assert "parameter 'lr' was float 0.001..0.03 (log)" in lines[0]
    assert "Traceback" not in err
    trials = _trials(results)
    assert budget.finished(trials) == 1  # the first run's trial only: nothing was spent
    assert budget.left(trials, 4) == 3


def test_a_moved_range_is_described_with_the_trials_outside_it(first_run, tmp_path, cli):
    (lr,) = [t.params["lr"] for t in _trials(first_run / "results")]
    low = lr * 1.5  # the first trial's lr now falls outside
    new = f"{low!r}, 0.05, log=True"
    with _changed(first_run, tmp_path, "1e-3, 3e-2, log=True", new) as (path, results):
        code, out, err = cli("search", path, "--results", results, "--n-trials", "2")
    assert code == 0, err
    shown = out + err
    assert "the search space differs from its earlier trials'" in shown
    assert f"lr: range 0.001..0.03 (log) is now {low:g}..0.05 (log)" in shown
    assert "1 finished trial falls outside" in shown
    assert "1 finished trial falls outside the new space; the sampler ignores it" in shown
    assert f"--study-name NEW --warm-start {results / 'tiny'}" in shown


def test_a_second_study_file_with_the_same_name_is_refused_naming_the_first(
    first_run, tmp_path, cli
):
    shutil.copytree(first_run / "results", tmp_path / "results")
    results = tmp_path / "results"
    other = tmp_path / "other"
    other.mkdir()
    second = write_study(other, settings=SETTINGS + ', name="tiny"', build_extra="")
    code, out, err = cli("search", second, "--results", results, "--n-trials", "2")
    assert code == 2
    assert f"was begun by the study file {(first_run / 'tiny.py').resolve()}" in err
    assert "--allow-other-file" in err
    assert budget.finished(_trials(results)) == 1
    code, out, err = cli(  # the budget is spent: it continues, and runs nothing
        "search", second, "--results", results, "--n-trials", "1", "--allow-other-file"
    )
    assert code == 0, err
    assert f"was begun by {(first_run / 'tiny.py').resolve()}; continuing it with" in out + err


def test_given_configurations_run_first_once_and_are_marked(first_run, tmp_path, cli):
    shutil.copytree(first_run / "results", tmp_path / "results")
    results = tmp_path / "results"
    given = tmp_path / "first.csv"
    given.write_text("lr,units,act\n0.005,20,relu\n")
    args = ("search", first_run / "tiny.py", "--results", results, "--enqueue", given)
    code, out, err = cli(*args, "--n-trials", "2")
    assert code == 0, err
    assert "1 given configuration queued to run first" in out + err
    trials = _trials(results)
    given_params = {"lr": 0.005, "units": 20, "act": "relu"}  # lr_schedule: not given, drawn
    assert {k: trials[1].params[k] for k in given_params} == given_params
    assert trials[1].user_attrs["given"]["from"] == f"--enqueue {given} line 2"
    code, out, err = cli(*args, "--n-trials", "2")  # again: nothing queued, nothing run
    assert code == 0, err
    assert "the given configuration is in the study already" in out + err
    assert len(_trials(results)) == 2
    code, out, err = cli("report", results / "tiny", "--format", "json")
    assert code == 0 and f'"given": "--enqueue {given} line 2"' in out


def test_a_given_value_outside_a_continued_studys_range_runs_nothing(first_run, tmp_path, cli):
    shutil.copytree(first_run / "results", tmp_path / "results")
    given = tmp_path / "first.jsonl"
    given.write_text('{"lr": 0.01, "units": 64}\n')
    code, out, err = cli("search", first_run / "tiny.py", "--results", tmp_path / "results",
                         "--enqueue", given, "--n-trials", "2")  # fmt: skip
    assert code == 2
    assert f"--enqueue {given} line 1: units=64 is outside int 8..32" in err
    assert len(_trials(tmp_path / "results")) == 1


def test_a_given_value_a_new_study_cannot_take_is_refused_at_its_build_uncounted(tmp_path):
    import tunecb

    path = write_study(tmp_path, settings=SETTINGS)
    with pytest.raises(tunecb.TunecbError, match=r"enqueue= item 1: units=64 is outside int 8"):
        tunecb.search(path, enqueue=[{"lr": 0.01, "units": 64}], quiet=True,
                      results=str(tmp_path / "results"))  # fmt: skip
    storage = open_storage(None, tmp_path / "results" / "tiny")
    trials = optuna.load_study(study_name="tiny", storage=storage).get_trials()
    assert [t.user_attrs.get("stop_reason") for t in trials] == ["discarded"]
    assert budget.finished(trials) == 0


def test_a_warm_start_adds_the_earlier_trials_that_fit_as_prior_knowledge(first_run, tmp_path, cli):
    source = first_run / "results" / "tiny"
    code, out, err = cli(
        "search", first_run / "tiny.py", "--results", tmp_path / "results",
        "--study-name", "warm", "--warm-start", source, "--n-trials", "1",
    )  # fmt: skip
    assert code == 0, err
    assert f"warm start from {source.resolve()}" in out + err
    assert "warm start: 1 of the 1 complete trials" in out + err
    storage = open_storage(None, tmp_path / "results" / "warm")
    trials = optuna.load_study(study_name="warm", storage=storage).get_trials()
    (earlier,) = _trials(first_run / "results")
    own = [t for t in trials if "warm_start" not in t.user_attrs]
    copied = [t for t in trials if "warm_start" in t.user_attrs]
    assert len(own) == 1 and budget.finished(trials) == 1  # the copy is not counted
    assert [(t.params, t.value, t.user_attrs["warm_start"]) for t in copied] == [
        (earlier.params, earlier.value, {"from": str(source.resolve()), "number": 0})
    ]
    code, out, err = cli("report", tmp_path / "results" / "warm", "--format", "json")
    assert code == 0 and '"warm_start"' not in out  # the report lists the study's own trials


def test_a_warm_start_runs_its_best_first_marked_given_a_value_outside_sampled(
    first_run, tmp_path, cli
):
    journal = first_run / "results" / "tiny" / "optuna.journal"  # a storage, not a folder
    (earlier,) = _trials(first_run / "results")
    low = earlier.params["lr"] * 1.5  # narrowed: the earlier best's lr falls outside
    new = f"{low!r}, 0.05, log=True"
    with _changed(first_run, tmp_path, "1e-3, 3e-2, log=True", new) as (path, results):
        code, out, err = cli(
            "search", path, "--results", results, "--study-name", "warm2",
            "--warm-start", journal, "--warm-start-enqueue", "1", "--n-trials", "2",
        )  # fmt: skip
        assert code == 0, err
        assert f"warm start from journal:{journal.resolve()} (study 'tiny')" in out + err
        assert "its best 1 complete trial queued to run first" in out + err
        storage = open_storage(None, results / "warm2")
        trials = optuna.load_study(study_name="warm2", storage=storage).get_trials()
        said = out + err
        code, report, err = cli("report", results / "warm2", "--wide")
    own = [t for t in trials if budget.counts(t)]
    assert len(own) == 2 and own[0].number == 0  # the earlier best ran first: trained, counted
    mark = own[0].user_attrs["given"]
    assert mark["from"] == f"--warm-start-enqueue: journal:{journal.resolve()} trial 0"
    assert mark["dropped"] == [
        f"lr={earlier.params['lr']!r} is outside float {low:g}..0.05 (log): sampled instead"
    ]
    assert f"trial 0: {mark['from']}: {mark['dropped'][0]}" in said
    kept = {k: v for k, v in earlier.params.items() if k != "lr"}
    assert {k: own[0].params[k] for k in kept} == kept and low <= own[0].params["lr"] <= 0.05
    assert "given" not in own[1].user_attrs  # then the sampler's own
    assert code == 0, err
    assert (
        f"warm start from journal:{journal.resolve()} (study 'tiny'): 0 of its trials as "
        "prior knowledge (not trained, not listed); its best 1 queued first: trial 0 (given)"
    ) in report  # its one trial's lr is outside: no prior


@pytest.mark.slow  # two worker processes, each importing Keras
def test_given_configurations_run_first_once_each_with_two_worker_processes(tmp_path, cli):
    path = write_study(tmp_path, settings=SETTINGS)
    given = tmp_path / "first.jsonl"
    configs = [{"lr": 0.002, "units": 9}, {"lr": 0.02, "units": 30}]
    given.write_text("".join(json.dumps(c) + "\n" for c in configs))
    code, out, err = cli("search", path, "--results", tmp_path / "results", "--jobs", "2",
                         "--enqueue", given, "--n-trials", "3")  # fmt: skip
    assert code == 0, err
    trials = _trials(tmp_path / "results")
    counted = [t for t in trials if budget.counts(t)]
    assert len(counted) == 3 == budget.finished(trials)
    ran = [{k: t.params[k] for k in ("lr", "units")} for t in counted]  # lr_schedule: drawn
    assert ran[:2] == configs and ran[2] not in configs  # first, once each
    assert [t.user_attrs["given"]["from"] for t in counted[:2]] == [
        f"--enqueue {given} line {n}" for n in (1, 2)
    ]


def test_a_warm_start_folder_that_is_not_a_results_folder_is_one_line_and_creates_nothing(
    tmp_path, cli
):
    path = write_study(tmp_path, settings=SETTINGS)
    code, out, err = cli("search", path, "--results", tmp_path / "results",
                         "--warm-start", tmp_path)  # fmt: skip
    assert code == 2
    (line,) = err.strip().splitlines()
    assert f"--warm-start {tmp_path}: not a tunecb results folder" in line
    storage = open_storage(None, tmp_path / "results" / "tiny")
    assert optuna.get_all_study_summaries(storage) == []
