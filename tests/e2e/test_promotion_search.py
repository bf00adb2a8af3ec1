"""The promotion pruner in real searches: configurations paused at a rung with their backup
kept, the best resumed by a free worker, in this process and with ``--jobs 2`` on the journal
file; a resumed configuration's epochs are those of an uninterrupted fit (``tunecb rerun``),
whether its worker kept its model in memory or read it from its backup. Two machines on one
PostgreSQL study, each resuming its own paused configurations:
tests/e2e/test_machines.py::test_two_searches_on_one_postgres_study_run_the_budget_exactly;
Dask workers pausing and promoting: tests/e2e/test_dask.py (on that file's shared cluster)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from conftest import write_study

from tunecb.oracle import attrs, budget, promotions
from tunecb.reporting.data.records import study_records
from tunecb.results import StudyDir, read_history
from tunecb.training import kept_models
from tunecb.training.backends import deterministic

# Four epochs: rungs at epochs 1 and 3 (a tenth of the budget, at least 1, times 3).
SETTINGS = (
    'monitor="val_accuracy", epochs=4, batch_size=64, n_trials={n}, seed=0, '
    'pruner="promotion", patience=None'
)


def journal_study(results: Path, name: str) -> optuna.Study:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(results / name / "optuna.journal"))
    )
    return optuna.load_study(study_name=name, storage=storage)


def configuration(trial: optuna.trial.FrozenTrial) -> int:
    history = trial.system_attrs.get(attrs.RETRY_HISTORY) or []
    return history[0] if history else trial.number


def check_promoted(results: Path, name: str, n: int) -> list[optuna.trial.FrozenTrial]:
    """What every promotion search must hold; returns the configurations' latest attempts
    that trained to the last epoch."""
    study = journal_study(results, name)
    trials = study.get_trials(deepcopy=False)
    assert budget.finished(trials) == n  # n_trials counts configurations
    assert len({configuration(t) for t in trials}) == n
    paused = [t for t in trials if t.user_attrs.get(attrs.STOP_REASON) == attrs.PAUSED]
    made = [t.system_attrs[attrs.PROMOTED_FROM] for t in trials
            if attrs.PROMOTED_FROM in t.system_attrs]  # fmt: skip
    assert paused and made and len(made) == len(set(made))  # each pause resumed at most once
    assert all(t.state == optuna.trial.TrialState.PRUNED for t in paused)
    # One report row per configuration; a resumed one shows its segments and whole history.
    records = study_records(results / name).records
    assert sorted(r["trial"] for r in records) == sorted(
        t.number for t in trials if t.number not in set(made)
    )
    assert len(records) == n
    finished = [t for t in trials if t.state.name == "COMPLETE"]
    assert finished, "the best configuration trained to the last epoch"
    folder = StudyDir(results / name)
    rungs = {r["trial"]: r["rungs"] for r in records}
    for t in finished:
        rows = read_history(folder.history(t.number))
        assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
        assert folder.checkpoint(t.number).is_file()
        if attrs.PROMOTED_FROM in t.system_attrs:
            assert rungs[t.number].endswith("→4") and not folder.backup_dir(
                configuration(t)
            ).exists()  # fmt: skip
    # Configurations still paused keep their backup (a later, larger run can resume them).
    for t in trials:
        if t.number not in set(made) and t.user_attrs.get(attrs.STOP_REASON) == attrs.PAUSED:
            assert (folder.backup_dir(configuration(t)) / "state.json").is_file()
            assert rungs[t.number].endswith("paused")
    return finished


def test_an_in_process_search_resumes_from_memory_and_from_backups_exactly(
    tmp_path, cli, monkeypatch
):
    # The worker keeps one paused model in memory (TUNECB_KEEP_PAUSED=1): the continuation
    # of the trial it paused last takes that model; one of an earlier pause reads its backup.
    monkeypatch.setenv(kept_models.ENV, "1")
    deterministic("tensorflow")  # as tunecb rerun runs: then every float is the same
    # val_loss: every float compared; patience: early stopping's state and best weights
    # resumed too (they come from memory or from the backup's checkpoint)
    settings = SETTINGS.format(n=4).replace('"val_accuracy"', '"val_loss"')
    settings = settings.replace("patience=None", "patience=3")
    path = write_study(tmp_path, name="promo", settings=settings,
                       layers_extra="keras.layers.Dropout(0.2),")  # fmt: skip
    results = tmp_path / "results"
    code, out, err = cli("search", path, "--results", results)
    assert code == 0, err
    assert " paused " in out
    check_promoted(results, "promo", 4)
    trials = journal_study(results, "promo").get_trials(deepcopy=False)
    resumed = [t for t in trials if attrs.PROMOTED_FROM in t.system_attrs]
    memory = [t.number for t in resumed if t.user_attrs.get(attrs.RESUMED_IN_MEMORY)]
    backup = [t.number for t in resumed if not t.user_attrs.get(attrs.RESUMED_IN_MEMORY)]
    assert memory and backup, (memory, backup)
    # Its seed is its first attempt's; fit again without a pause, every epoch's val_loss is
    # the same float (array data shuffled by Keras' default, dropout, on the CPU).
    for number in (memory[-1], backup[-1]):
        code, out, err = cli("rerun", results / "promo", number)
        assert code == 0, err
        assert "identical: val_loss" in out, out


@pytest.mark.slow
def test_two_worker_processes_pause_and_promote_on_one_journal(tmp_path, cli):
    path = write_study(tmp_path, name="promo2", settings=SETTINGS.format(n=5))
    results = tmp_path / "results"
    code, out, err = cli("search", path, "--results", results, "--jobs", "2")
    assert code == 0, err
    check_promoted(results, "promo2", 5)
    workers = {t.user_attrs.get(attrs.WORKER) for t in journal_study(results, "promo2").trials}
    assert len(workers) == 2
    side = promotions.side_name("promo2")
    assert side not in out  # the side study is not shown
