"""Constraints on the built model through real (tiny) searches: infeasible models never train."""

from __future__ import annotations

import optuna
from conftest import trial_json

# The tiny study's MLP has 75 * units + 10 parameters: units 8-32 give 610-2410.
MAX_PARAMS = 1500  # units > 19 are infeasible


def _journal(results):
    return optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(results / "tiny" / "optuna.journal"))
    )


def test_models_over_max_params_end_infeasible_before_any_epoch(study_file, tmp_path, cli):
    path = study_file(
        settings='monitor="val_accuracy", epochs=2, batch_size=64, n_trials=8, seed=0, '
        f'pruner="none", max_params={MAX_PARAMS}'
    )
    results = tmp_path / "r"
    code, out, err = cli("search", path, "--results", results)
    assert code == 0, err
    metas = [trial_json(results, "tiny", n) for n in range(8)]
    infeasible = [m for m in metas if m["n_params"] > MAX_PARAMS]
    trained = [m for m in metas if m["n_params"] <= MAX_PARAMS]
    assert infeasible and trained
    for meta in infeasible:
        folder = results / "tiny" / "trials" / str(meta["number"])
        assert meta["state"] == "PRUNED" and meta["stop_reason"] == "infeasible"
        assert meta["epochs_run"] == 0 and meta["checkpoint"] is None
        assert meta["best_value"] is None and meta["constraint"] > 0
        assert f"over max_params={MAX_PARAMS:,}" in meta["error"]
        assert {p.name for p in folder.iterdir()} == {"trial.json"}  # no fit, no checkpoint
        assert meta["duration_s"] < 2.0  # a build, not a fit
    for meta in trained:
        assert meta["state"] == "COMPLETE" and meta["epochs_run"] == 2
        assert meta["constraint"] <= 0 and meta["checkpoint"]
    # The sampler got each trial's violation (Optuna's record of its constraints_func).
    study = optuna.load_study(study_name="tiny", storage=_journal(results))
    for trial in study.trials:
        assert tuple(trial.system_attrs["constraints"]) == (trial.user_attrs["constraint"],)
    # The terminal and the report say which trials were infeasible, and why.
    assert f"{len(infeasible)} infeasible" in out and "infeasible" in out
    code, report, err = cli("report", results / "tiny", "--wide")
    assert code == 0, err
    assert f"{len(trained)} complete, {len(infeasible)} infeasible" in report.splitlines()[0]
    rows = [line for line in report.splitlines()[1:] if " infeasible " in line]
    assert len(rows) == len(infeasible) and all("PRUNED" in row for row in rows)
    assert "saved: constraints" in report
    # Nothing was trained to fit again.
    code, _, err = cli("rerun", results / "tiny", infeasible[0]["number"])
    assert code == 2 and "was infeasible" in err and len(err.strip().splitlines()) == 1


def test_a_constraint_function_rejects_models_and_failures_between_count_alone(
    study_file, tmp_path, cli
):
    # Wide models are infeasible (the function), narrow ones fail to build: every trial of
    # this run is one or the other, and the infeasible ones do not hide the failures.
    path = study_file(
        settings='monitor="val_accuracy", epochs=2, n_trials=20, seed=1, pruner="none"',
        build_extra="if units <= 20: raise ValueError('too narrow')",
        extra="""
        @study.constraint
        def narrow(model):
            return model.layers[0].units <= 20
        """,
    )
    results = tmp_path / "r"
    code, out, err = cli("search", path, "--results", results)
    metas = [trial_json(results, "tiny", int(p.name)) for p in (results / "tiny/trials").iterdir()]
    reasons = sorted(m["stop_reason"] for m in metas)
    assert "infeasible" in reasons and reasons.count("failed") == 5
    assert code == 1 and "the first 5 trials all failed" in err and "too narrow" in err
    assert all(m["epochs_run"] == 0 for m in metas)
    assert all(m["constraint"] == 1.0 for m in metas if m["stop_reason"] == "infeasible")


def test_a_constraint_that_answers_nonsense_stops_the_search_in_one_line(study_file, tmp_path, cli):
    path = study_file(
        settings='monitor="val_accuracy", epochs=2, n_trials=3, pruner="none"',
        extra="""
        @study.constraint
        def fits(model):
            model.count_params()  # forgot the return
        """,
    )
    code, out, err = cli("search", path, "--results", tmp_path / "r")
    assert code == 2
    assert "the constraint fits()" in err and "returned None" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_constraint_settings_are_one_line_errors(study_file, tmp_path, cli):
    code, _, err = cli("search", study_file(), "--max-params", "0", "--results", tmp_path / "r")
    assert code == 2 and "--max-params" in err and len(err.strip().splitlines()) == 1
    path = study_file(settings='monitor="val_accuracy", max_params=0')
    code, _, err = cli("search", path, "--results", tmp_path / "r")
    assert code == 2 and "max_params= 0: must be a positive number of parameters" in err
    path = study_file(settings='monitor="val_accuracy", constraint="small"')
    code, _, err = cli("search", path, "--results", tmp_path / "r")
    assert code == 2 and "constraint='small' is not a function" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
