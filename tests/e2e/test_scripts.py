"""The README's "In code and notebooks" example, saved as a script as a user would (no
``if __name__ == "__main__":`` guard), run with ``python search.py`` and ``python -m
pkg.search`` in real processes with two workers: it works, and it is as quiet as the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_workers import journal_study

from tests.tf_startup import without_them

ROOT = Path(__file__).resolve().parents[2]

# A module beside the script that the script imports at its top: the workers import it too.
ROWS = """
import numpy as np


def tiny():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    return (x[:120], y[:120]), (x[120:], y[120:])
"""

NOISE = (
    "absl::InitializeLog",
    "oneDNN custom operations",
    "cpu_feature_guard",
    "A new study created",
    "IProgress not found",
    "Traceback",
    "bootstrapping phase",
)


def readme_example() -> str:
    """The first Python block of the README's "In code and notebooks" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## In code and notebooks", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def as_script(rows_module: str) -> str:
    """The README example with tiny data and budget, jobs=2, a results folder from argv, a
    logger of the user's own, and what it printed."""
    code = readme_example()
    replacements = {
        "import keras\n": (
            f"import keras\nimport logging, sys\nfrom {rows_module} import tiny\n"
            "logging.basicConfig(level=logging.INFO)  # the user's own logging\n"
        ),
        "epochs=20, n_trials=20": "epochs=2, n_trials=2",
        "def load(): ...": "def load():\n    return tiny()\n\n\ndef _unused(): ...",
        'tunecb.search(study, n_trials=30, results="results")': (
            "tunecb.search(study, n_trials=2, results=sys.argv[1], jobs=2)"
        ),
        'tunecb.load_study("results/digits")': "tunecb.load_study(str(result.study_dir))",
    }
    for old, new in replacements.items():
        assert old in code, f"the README example changed: {old!r} is gone; update this test"
        code = code.replace(old, new)
    return code + (
        'logging.getLogger("mine").info("mine says hello")\n'
        'print("RESULT", len(result.trials), len(optuna_study.trials), model.count_params())\n'
        'import os; print("PID", os.getpid())\n'
    )


def run(command: list[str], cwd: Path, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TUNECB_JOBS")}
    env |= {"PYTHONPATH": str(ROOT), **extra}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def check(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"^RESULT 2 2 \d+$", proc.stdout, re.M), proc.stdout[-2000:]
    noise = [
        line for line in without_them(proc.stderr).splitlines() if any(n in line for n in NOISE)
    ]
    assert not noise, proc.stderr[-3000:]
    assert "mine says hello" in proc.stderr  # the user's own logging is untouched


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_readme_example_runs_as_a_plain_script_with_workers_and_quietly(tmp_path):
    (tmp_path / "rows.py").write_text(ROWS)
    (tmp_path / "search.py").write_text(as_script("rows"))
    proc = run([sys.executable, "search.py", str(tmp_path / "results")], tmp_path)
    check(proc)
    parent = re.search(r"^PID (\d+)$", proc.stdout, re.M).group(1)
    workers = {t.user_attrs["worker"] for t in journal_study(tmp_path / "results", "digits").trials}
    assert workers and not any(w.endswith(f":{parent}") for w in workers)  # in worker processes


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_readme_example_runs_with_python_dash_m(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "rows.py").write_text(ROWS)
    (package / "search.py").write_text(as_script("pkg.rows"))
    check(run([sys.executable, "-m", "pkg.search", str(tmp_path / "results")], tmp_path))


# A script that declares its study and searches it at its top, without a guard; the budget
# comes from the environment so that a search run again by mistake would train more trials.
SEARCHING_SCRIPT = """
import os
import sys

import keras
import numpy as np
import tunecb

study = tunecb.Study(name="scripted", monitor="val_accuracy", epochs=2, batch_size=32, seed=0,
                     pruner="none")


@study.data
def load():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    return (x[:120], y[:120]), (x[120:], y[120:])


@study.model
def build(trial):
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(trial.suggest_int("units", 4, 8)),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


result = tunecb.search(study, results=sys.argv[1] if len(sys.argv) > 1 else "results",
                       n_trials=int(os.environ.get("TRIALS", "2")), jobs=0, quiet=True)
print("SEARCHED", len(result.trials))
"""


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_study_declared_in_a_script_is_retrained_and_rerun_without_its_search(
    tmp_path, cli, monkeypatch
):
    """The script searches in a process of its own; ``retrain`` and ``rerun`` run in this
    process (the same code as the command's, without three more start-ups of Keras)."""
    script = tmp_path / "search.py"
    script.write_text(SEARCHING_SCRIPT)
    proc = run([sys.executable, str(script), str(tmp_path / "results")], tmp_path)
    assert proc.returncode == 0 and "SEARCHED 2" in proc.stdout, proc.stderr[-3000:]
    results = tmp_path / "results" / "scripted"
    script.write_text(SEARCHING_SCRIPT + "# edited outside the study's functions\n")
    monkeypatch.chdir(tmp_path)

    # The script recorded by the trials is used; its search is not run (TRIALS=4 would
    # train two more trials); no false "changed" note.
    monkeypatch.setenv("TRIALS", "4")
    code, out, err = cli("retrain", results, "--trial", 0, "--epochs", 1)
    assert code == 0, err[-3000:]
    assert "changed" not in err and "SEARCHED" not in out
    assert "changed" not in (results / "trials" / "0" / "final.json").read_text()
    code, out, err = cli("rerun", results, 1, "--study", script)
    assert code == 0, err[-3000:]
    assert "identical" in out and "changed" not in out + err and "SEARCHED" not in out
    assert len(journal_study(tmp_path / "results", "scripted").trials) == 2
    monkeypatch.delenv("TRIALS")

    # A changed builder is said.
    script.write_text(SEARCHING_SCRIPT.replace('"units", 4, 8', '"units", 4, 9'))
    code, out, err = cli("retrain", results, "--trial", 0, "--epochs", 1)
    assert code == 0, err[-3000:]
    assert f"note: the study declared in {script} changed since trial 0 ran" in err

    # A notebook cannot be imported: its study must be passed, in one line.
    record = results / "trials" / "0" / "trial.json"
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "study_file": "/tmp/ipykernel_1/2.py"}))
    code, out, err = cli("retrain", results, "--trial", 0)
    assert code == 2 and err.count("\n") == 1, err
    assert "declared in a notebook" in err and "--study FILE" in err
