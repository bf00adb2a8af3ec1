"""Configurations given to run first (``--enqueue``): read from files, queued once, run
first and exactly once even when two launchers queue them on one storage (a real journal
storage and the real loop with a fake runner: no fit)."""

from __future__ import annotations

import json
import re

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from tunecb.errors import ConfigError
from tunecb.execution._base import Limits
from tunecb.execution.loop import run_trials
from tunecb.oracle import attrs, budget, given, space
from tunecb.oracle.outcome import COMPLETE, TrialOutcome
from tunecb.study.configurations import read

optuna.logging.set_verbosity(optuna.logging.WARNING)


class Runner:
    """Asks x (float 0..1) and k (int 1..4), as a builder would, through the real guard."""

    def __init__(self) -> None:
        self.ran: list[tuple[int, dict]] = []

    def run(self, trial: optuna.Trial) -> TrialOutcome:
        found = space.guard(trial)
        trial.suggest_float("x", 0.0, 1.0)
        trial.suggest_int("k", 1, 4)
        space.check_given(found)
        self.ran.append((trial.number, dict(trial.params)))
        return TrialOutcome(
            number=trial.number, state=COMPLETE, value=trial.params["x"], best_epoch=1,
            epochs_run=1, stop_reason="completed", error=None, checkpoint=None,
            duration_s=0.0, n_params=1, seed=0, lr_schedule="none",
        )  # fmt: skip


class Sink:
    def started(self, number: int) -> None: ...

    def epoch(self, number: int, epoch: int, value: float | None) -> None: ...

    def finished(self, result: TrialOutcome) -> None: ...


GIVEN = [{"x": 0.25, "k": 2}, {"x": 0.75, "k": 4}, {"x": 0.5, "k": 1}]


def _journal(tmp_path) -> optuna.storages.BaseStorage:
    backend = optuna.storages.journal.JournalFileBackend(str(tmp_path / "optuna.journal"))
    return optuna.storages.JournalStorage(backend)


def test_two_launchers_queue_the_same_file_and_each_configuration_runs_once_first(tmp_path):
    storage = _journal(tmp_path)
    optuna.create_study(study_name="s", storage=storage)
    path = tmp_path / "first.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in GIVEN))
    launchers = [optuna.load_study(study_name="s", storage=storage) for _ in range(2)]
    for study in launchers:  # both open the study before either runs a trial
        given.enqueue(study, read(str(path)), {})
    runners = [Runner(), Runner()]
    for study, runner in zip(launchers, runners, strict=True):
        run_trials(study, runner, Limits(n_trials=5), Sink(), seed=0)
    trials = launchers[0].get_trials()
    ran = sorted((n, p) for r in runners for n, p in r.ran)
    assert [p for _, p in ran[:3]] == GIVEN  # first, in order, once each
    assert len(ran) == 5 == budget.finished(trials)
    marked = [t.user_attrs[attrs.GIVEN]["from"] for t in trials if budget.counts(t)
              and attrs.GIVEN in t.user_attrs]  # fmt: skip
    assert marked == [f"--enqueue {path} line {n}" for n in (1, 2, 3)]
    # Opening again queues nothing: they are in the study already.
    assert given.enqueue(launchers[0], read(str(path)), {}) == [
        "the 3 given configurations are in the study already: none queued"
    ]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"x": 2.0, "k": 1}, "x=2.0 is outside float 0..1"),
        ({"x": "big", "k": 1}, "x='big' is not a number (float 0..1)"),
        ({"x": 0.5, "k": 1.5}, "k=1.5 is not a whole number (int 1..4)"),
        ({"x": 0.5, "k": 1, "depth": 3}, "the builder never asks depth (it asks x, k)"),
    ],
)
def test_a_given_configuration_the_builder_cannot_take_stops_the_search(tmp_path, params, message):
    study = optuna.create_study(study_name="s", storage=_journal(tmp_path))
    given.enqueue(study, read([params]), {})
    with pytest.raises(space.GivenInvalid, match=re.escape("enqueue= item 1: " + message)):
        run_trials(study, Runner(), Limits(n_trials=3), Sink(), seed=0)


def test_a_continued_study_checks_every_given_value_before_queueing_any():
    study = optuna.create_study()
    earlier = {"x": FloatDistribution(0, 1), "k": IntDistribution(1, 4),
               "act": CategoricalDistribution(["relu"])}  # fmt: skip
    with pytest.raises(ConfigError, match=r"enqueue= item 2: act='elu' is not one of \['relu'\]"):
        given.enqueue(study, read([{"x": 0.1}, {"act": "elu"}]), earlier)
    assert study.trials == []


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("empty.jsonl", "\n\n", "no configurations in it"),
        ("bad.jsonl", '{"x": 1}\n{"x": \n', "line 2: not JSON"),
        ("list.jsonl", "[1, 2]\n", "line 1: not an object of parameters"),
        ("nested.jsonl", '{"x": [1]}\n', "line 1: x=[1] is not a number, a string"),
        ("header.csv", "x,k\n", "no configurations in it"),
        ("ragged.csv", "x,k\n0.1,2,3\n", "line 2: not one value per column"),
    ],
)
def test_a_file_of_configurations_that_cannot_be_read_is_one_line_naming_it(
    tmp_path, name, text, message
):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"{re.escape(str(path))}.*{re.escape(message)}") as info:
        read(str(path))
    assert "\n" not in str(info.value)


def test_a_missing_file_names_it(tmp_path):
    with pytest.raises(ConfigError, match=r"--enqueue .*nope\.jsonl: cannot read it"):
        read(str(tmp_path / "nope.jsonl"))


def test_a_csv_gives_numbers_and_text_per_column(tmp_path):
    path = tmp_path / "first.csv"
    path.write_text("x,k,act\n0.5,2,relu\n1e-3,4,\n")
    assert [c.params for c in read(str(path))] == [
        {"x": 0.5, "k": 2, "act": "relu"},
        {"x": 0.001, "k": 4},
    ]


def test_a_file_the_study_file_names_is_found_beside_it(tmp_path, monkeypatch):
    from conftest import DEFAULT_SETTINGS, write_study

    from tunecb.oracle.opening import open_study
    from tunecb.results import StudyDir
    from tunecb.storage.urls import open_storage
    from tunecb.study.settings import resolve
    from tunecb.study.study_file import load_study_file

    (tmp_path / "first.jsonl").write_text('{"lr": 0.01, "units": 16}\n')
    loaded = load_study_file(
        write_study(tmp_path, settings=DEFAULT_SETTINGS + ', enqueue="first.jsonl"')
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = resolve(loaded.study.settings, {}, default_name=loaded.default_name,
                       study_path=loaded.path)  # fmt: skip
    study_dir = StudyDir(elsewhere / "results" / "tiny")
    study_dir.prepare()
    study, _, notes = open_study(loaded, settings, study_dir, open_storage(None, study_dir.root))
    assert notes == ["1 given configuration queued to run first"]
    (waiting,) = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert waiting.user_attrs[attrs.GIVEN]["from"] == f"--enqueue {tmp_path / 'first.jsonl'} line 1"
