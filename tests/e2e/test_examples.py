"""The shipped example studies run here as they are (tiny budgets; no download)."""

from __future__ import annotations

from pathlib import Path

import pytest

import tunecb

STUDIES = Path(__file__).resolve().parents[2] / "studies"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits", "digits_cnn"])
def test_example_study_runs_and_its_best_model_loads(cli, tmp_path, name):
    code, out, err = cli("search", STUDIES / f"{name}.py", "--results", tmp_path,
                         "--n-trials", "2", "--epochs", "2")  # fmt: skip
    assert code == 0, err
    df = tunecb.report(tmp_path / name)
    assert len(df) == 2 and df["checkpoint"].iloc[0]
    model = tunecb.load_best(tmp_path / name)
    assert model.compiled
    if name == "digits_cnn":
        assert "batch   0: loss" in out  # the user callback printed
        assert set(df["params_lr_schedule"]) <= {"none", "plateau", "cosine", "step"}
