"""``tunecb.search()`` from code: a script, a real Jupyter kernel, workers fed by value."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_workers import journal_study

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
import keras
import numpy as np
import tunecb

study = tunecb.Study(name="scripted", monitor="val_accuracy", epochs={epochs}, batch_size=32,
                     n_trials={n}, seed=0, pruner="none")


@study.data
def load():
    rng = np.random.default_rng(0)
    x = rng.normal(size=({rows}, 12)).astype("float32")
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0).astype("int32")  # 3 classes
    return (x[:{split}], y[:{split}]), (x[{split}:], y[{split}:])


@study.model
def build(trial, data):
    import helper  # a module beside the script, imported during the search

    model = keras.Sequential([keras.Input(data.input_shape),
                              keras.layers.Dense(helper.units(trial), activation="relu"),
                              keras.layers.Dense(data.n_classes, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


if __name__ == "__main__":
    try:
        result = tunecb.search(study, results=sys.argv[1], jobs={jobs})
    except KeyboardInterrupt:
        print(json.dumps({{"interrupted": True}}), flush=True)
        raise SystemExit(130)
    print(json.dumps({{
        "best_value": result.best_value, "best_params": result.best_params,
        "study_dir": str(result.study_dir), "rows": len(result.trials),
        "optuna_trials": len(tunecb.load_study(str(result.study_dir)).trials),
        "evaluated": float(result.load_best().evaluate(*load()[1], verbose=0)[1]),
        "repr": repr(result),
    }}))
"""

HELPER = """
def units(trial):
    return trial.suggest_int("units", 4, 16)
"""


def write_script(folder: Path, jobs: object, n: int = 3, epochs: int = 2, rows: int = 256,
                 split: int = 192) -> Path:  # fmt: skip
    (folder / "helper.py").write_text(HELPER)
    path = folder / "tune.py"
    path.write_text(SCRIPT.format(n=n, epochs=epochs, rows=rows, split=split, jobs=repr(jobs)))
    return path


def workers_of(results: Path, name: str) -> set[str]:
    """The ``host:pid`` of every worker that ran a trial of the study."""
    return {t.user_attrs["worker"] for t in journal_study(results, name).trials}


def user_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "TUNECB_JOBS"}


@pytest.mark.parametrize("jobs", [0, 2])
def test_search_from_a_script_in_this_process_and_with_workers(tmp_path, jobs):
    """The study's functions are defined in the script's __main__: with jobs=2 they travel to
    the worker processes by value; the builder gets the data and imports a helper module."""
    path = write_script(tmp_path, jobs)
    proc = subprocess.run([sys.executable, str(path), str(tmp_path / "r")], capture_output=True,
                          text=True, timeout=300, env=user_env(), cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["rows"] == out["optuna_trials"] == 3
    assert out["study_dir"] == str(tmp_path / "r" / "scripted")
    assert out["evaluated"] == pytest.approx(out["best_value"], abs=1e-6)
    assert set(out["best_params"]) == {"units"}
    assert "<SearchResult 'scripted': 3 trials" in out["repr"]
    # A log, not a terminal: one plain line per finished trial, then the summary.
    assert proc.stdout.count(" trial ") >= 3 and "search done in" in proc.stdout
    trial = json.loads((tmp_path / "r" / "scripted" / "trials" / "0" / "trial.json").read_text())
    assert trial["state"] == "COMPLETE"
    if jobs == 2:
        assert len(workers_of(tmp_path / "r", "scripted")) == 2  # two worker processes ran them


def test_ctrl_c_raises_keyboardinterrupt_and_the_study_resumes(tmp_path):
    path = write_script(tmp_path, 0, n=2, epochs=400, rows=2048, split=1536)
    results = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, str(path), str(results)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=user_env(), cwd=tmp_path,
                            start_new_session=True)  # fmt: skip
    try:
        history = results / "scripted" / "trials" / "0" / "history.csv"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
            history.exists() and len(history.read_text().splitlines()) > 2
        ):
            time.sleep(0.2)
        assert history.exists(), "the first trial never reached epoch 2"
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, out + err
    assert '{"interrupted": true}' in out
    trials = journal_study(results, "scripted").trials
    assert trials[0].state.name == "FAIL"
    assert trials[0].user_attrs["stop_reason"] == "interrupted"
    assert any(t.state.name == "WAITING" for t in trials)  # queued again: the study resumes


def test_unknown_settings_and_bad_jobs_are_one_line_errors(tmp_path):
    import tunecb

    path = write_script(tmp_path, 0)
    with pytest.raises(tunecb.ConfigError, match=r"unknown setting\(s\) \['n_trails'\]"):
        tunecb.search(str(path), n_trails=3)
    with pytest.raises(tunecb.ConfigError, match="jobs='many'"):
        tunecb.search(str(path), jobs="many")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_shipped_notebook_runs_in_a_real_kernel_with_two_workers(tmp_path):
    """studies/digits_notebook.ipynb, executed by a real Jupyter kernel: its study is declared
    in a cell and searched with jobs="auto" (two worker processes on two cores)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(ROOT / "studies" / "digits_notebook.ipynb", as_version=4)
    env = user_env() | {"TUNECB_RESULTS": str(tmp_path / "r"), "TUNECB_TRIALS": "4"}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user's kernel: tunecb quiets TensorFlow
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        client = nbclient.NotebookClient(
            notebook, timeout=540, kernel_name="python3",
            resources={"metadata": {"path": str(tmp_path)}},
        )  # fmt: skip
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    search_cell = notebook.cells[2]
    html = "".join(
        o.get("data", {}).get("text/html", "")
        for o in search_cell.outputs
        if o.get("output_type") in ("display_data", "update_display_data", "execute_result")
    )
    assert "4/4 trials" in html  # the live view, as last updated
    assert "<SearchResult" not in html and "best val_accuracy" in html  # the result's HTML
    printed = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
    assert "optuna trials: 4" in printed
    trials = tmp_path / "r" / "digits_notebook" / "trials"
    assert len(list(trials.glob("*/trial.json"))) == 4
    assert len(workers_of(tmp_path / "r", "digits_notebook")) == 2  # the cell's code, 2 workers
    assert "Traceback" not in printed
    # as quiet as the CLI: no TensorFlow start-up lines, no Optuna INFO, no tqdm warning
    noise = ("absl::InitializeLog", "cpu_feature_guard", "A new study created", "IProgress")
    assert not [n for n in noise if n in printed], printed


def test_a_study_whose_functions_cannot_travel_runs_here_with_a_note(tmp_path):
    script = tmp_path / "lock.py"
    script.write_text(
        textwrap.dedent("""
        import json, sys, threading
        import tunecb
        exec(open(sys.argv[2]).read())  # the SCRIPT's study, without running it
        LOCK = threading.Lock()  # a lock cannot be pickled
        inner = study.build_fn

        @study.model
        def build_locked(trial, data):
            with LOCK:
                return inner(trial, data)

        result = tunecb.search(study, results=sys.argv[1], n_trials=2, quiet=True)
        workers = set(result.trials["trial"].map(
            lambda n: result.study.trials[n].user_attrs["worker"]))
        print(json.dumps({"rows": len(result.trials), "workers": len(workers)}))
    """)
    )
    tune = write_script(tmp_path, 0)
    tune.write_text(tune.read_text().split('if __name__ == "__main__":')[0])
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "r"), str(tune)],
                          capture_output=True, text=True, timeout=300, env=user_env(),
                          cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # jobs="auto" would run 2 workers; the lock cannot travel, so both ran in this process
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"rows": 2, "workers": 1}
