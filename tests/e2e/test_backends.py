"""Every Keras backend: the core behaviours on TensorFlow, JAX and PyTorch (those installed).

Each search runs in real processes with ``--backend``; checkpoints are loaded back in a fresh
process under the same or another backend and evaluated against their recorded values.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from test_workers import journal_study, trials_so_far

from tests.tf_startup import CANDIDATES
from tunecb.training.backends import BACKENDS, installed

HERE = installed()
OTHERS = [b for b in HERE if b != "tensorflow"]
on_each = pytest.mark.parametrize("backend", HERE)

STUDY = """
import json, os
import keras
import numpy as np
import optuna
import tunecb

study = tunecb.Study(monitor="val_accuracy", epochs={epochs}, batch_size=64, n_trials={n},
                     patience=None, seed=0, backup_every=0,
                     # a trial that learns nothing (lr 0) is pruned after epoch 3
                     pruner=optuna.pruners.ThresholdPruner(lower=0.8, n_warmup_steps=3))

@study.data
def load():
    report = os.environ.get("TUNECB_TEST_REPORT")
    if report:
        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf
            threads = tf.config.threading.get_intra_op_parallelism_threads()
        elif backend == "torch":
            import torch
            threads = torch.get_num_threads()
        else:
            flags = os.environ.get("XLA_FLAGS", "")
            threads = 1 if "intra_op_parallelism_threads=1" in flags else 0
        with open(os.path.join(report, f"{{os.getpid()}}.json"), "w") as f:
            json.dump({{"backend": backend, "threads": threads}}, f)
    rng = np.random.default_rng(0)
    x = rng.normal(size=({rows}, 16)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    return (x[:{split}], y[:{split}]), (x[{split}:], y[{split}:])

@study.model
def build(trial):
    units = trial.suggest_int("units", 4, 32)
    lr = 0.0 if trial.number == 1 else 0.02
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(units, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model
"""

EVALUATE = """
import json, sys
import numpy as np
import tunecb
rng = np.random.default_rng(0)
x = rng.normal(size=({rows}, 16)).astype("float32")
y = (x[:, 0] > 0).astype("int32")
import keras
out = {{"backend": keras.backend.backend(), "accuracy": {{}}}}
for study_dir, trial in zip(sys.argv[1::2], sys.argv[2::2]):
    model = tunecb.load_best(study_dir, trial=int(trial))
    _, accuracy = model.evaluate(x[{split}:], y[{split}:], verbose=0, batch_size=4096)
    out["accuracy"][f"{{study_dir}}#{{trial}}"] = float(accuracy)
print(json.dumps(out))
"""


def write(folder: Path, n: int = 3, epochs: int = 4, rows: int = 1024, split: int = 768) -> Path:
    path = folder / "bk.py"
    path.write_text(STUDY.format(n=n, epochs=epochs, rows=rows, split=split))
    return path


def env_for(backend: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    return env | ({"KERAS_BACKEND": backend} if backend else {}) | extra


def tunecb(*args: object, env: dict[str, str], timeout: float = 300):
    return subprocess.run([sys.executable, "-m", "tunecb", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=timeout)  # fmt: skip


def evaluate(
    checkpoints: list[tuple[Path, int]], backends: list[str], rows=1024, split=768
) -> dict[str, dict]:
    """Load and evaluate ``(study_dir, trial)`` checkpoints in one fresh process per backend
    (the processes run side by side): ``{backend: {"backend": ...,
    "accuracy": {"<study_dir>#<trial>": value}}}``."""
    code = textwrap.dedent(EVALUATE.format(rows=rows, split=split))
    args = [str(a) for study_dir, trial in checkpoints for a in (study_dir, trial)]
    command = [sys.executable, "-c", code, *args]
    procs = {}
    for backend in backends:
        procs[backend] = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True, env=env_for(backend))  # fmt: skip
    results = {}
    try:
        for backend, proc in procs.items():
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            assert "Traceback" not in err
            results[backend] = json.loads(out.strip().splitlines()[-1])
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def journal(results: Path, name: str = "bk") -> optuna.Study:
    return journal_study(results, name)


@pytest.fixture(scope="module")
def searches(tmp_path_factory) -> dict[str, Path]:
    """A 3-trial search on each backend with two workers (trial 1 pruned), TensorBoard on
    where TensorFlow is installed: ``{backend: folder}``."""
    folders = {}
    for backend in HERE:
        folder = tmp_path_factory.mktemp(f"searched-{backend}")
        (folder / "env").mkdir()
        flags = ["--tensorboard"] if "tensorflow" in HERE else []
        proc = tunecb("search", write(folder), "--results", folder / "r", "--backend", backend,
                      "--jobs", "2", "--log-format", "json", *flags,
                      env=env_for(None, TUNECB_TEST_REPORT=str(folder / "env")))  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        # the workers' (and zygote's) import of TensorFlow: its oneDNN notices filtered out
        assert not [m for m in CANDIDATES if m in proc.stderr], proc.stderr
        folders[backend] = folder
    return folders


@pytest.fixture(scope="module")
def evaluated(searches) -> dict[str, dict]:
    """Trials 0 (COMPLETE) and 1 (PRUNED) of every backend's search, loaded and evaluated
    under every backend: ``{loader: {"backend", "accuracy": {"<dir>#<n>": value}}}``."""
    checkpoints = [(f / "r" / "bk", n) for f in searches.values() for n in (0, 1)]
    return evaluate(checkpoints, HERE)


def recorded(folder: Path, number: int) -> float:
    path = folder / "r" / "bk" / "trials" / str(number) / "trial.json"
    return json.loads(path.read_text())["value"]


@on_each
def test_a_search_runs_prunes_and_records_its_backend(searches, backend):
    folder = searches[backend]
    trials = journal(folder / "r").trials
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED", "COMPLETE"]
    assert trials[1].user_attrs["epochs_run"] == 3
    for t in trials:
        assert t.user_attrs["versions"]["backend"] == backend
        assert t.user_attrs["versions"][backend]
    seen = [json.loads(p.read_text()) for p in (folder / "env").glob("*.json")]
    assert len(seen) == 2 and {s["backend"] for s in seen} == {backend}
    assert {s["threads"] for s in seen} == {1}  # two workers on two cores: one thread each
    if "tensorflow" in HERE:  # Keras' TensorBoard callback writes with tf.summary
        assert any((folder / "r" / "bk" / "tensorboard" / "trial_0").rglob("events.out.*"))


@on_each
def test_each_checkpoint_evaluates_to_its_recorded_value_under_every_backend(
    searches, evaluated, backend
):
    """Written on ``backend``; loaded on each backend (the same one, and every other)."""
    folder = searches[backend]
    for loader, got in evaluated.items():
        assert got["backend"] == loader
        for number in (0, 1):  # a COMPLETE and a PRUNED trial
            value = got["accuracy"][f"{folder / 'r' / 'bk'}#{number}"]
            tolerance = 1e-6 if loader == backend else 1e-5
            assert value == pytest.approx(recorded(folder, number), abs=tolerance), loader


@on_each
def test_the_report_names_the_backend(searches, backend, tmp_path, cli):
    study_dir = searches[backend] / "r" / "bk"
    code, out, err = cli("report", study_dir)  # reads the records: no backend needed
    assert code == 0, err
    assert f"on {backend} " in out
    html = tmp_path / "r.html"
    assert cli("report", study_dir, "--format", "html", "--output", html)[0] == 0
    assert "Keras backend" in html.read_text() and backend in html.read_text()


@pytest.mark.skipif(len(HERE) < 2, reason="one backend installed")
def test_a_study_run_on_two_backends_says_so(searches, tmp_path, cli):
    first, other = HERE[0], HERE[1]
    mixed = tmp_path / "mixed"
    shutil.copytree(searches[first] / "r", mixed)
    more = tunecb("search", searches[first] / "bk.py", "--results", mixed, "--backend", other,
                  "--n-trials", "4", "--jobs", "0", env=env_for())  # fmt: skip
    assert more.returncode == 0, more.stderr
    code, text, err = cli("report", mixed / "bk")
    assert code == 0, err
    header = next(line for line in text.splitlines() if line.lstrip().startswith("rank"))
    assert "MIXED backends" in text and "backend" in header.split()


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHERS[:1] or ["tensorflow"])
def test_a_killed_workers_trial_resumes_from_its_last_epoch(tmp_path, backend):
    """On one backend other than TensorFlow (JAX where installed, as in CI): tunecb's
    backup and restore code is the same on every backend, and the searches above train on
    each. (TensorFlow's case is tests/e2e/test_workers.py.)"""
    path = write(tmp_path, n=1, epochs=40, rows=4096, split=3072)
    results = tmp_path / "r"
    command = [sys.executable, "-m", "tunecb", "search", str(path), "--results", str(results),
               "--backend", backend, "--jobs", "1"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env_for(), start_new_session=True)  # fmt: skip
    try:
        victim = None
        deadline = time.monotonic() + 180
        while victim is None and time.monotonic() < deadline:
            time.sleep(0.2)
            running = [t for t in trials_so_far(results, "bk") if t.state.name == "RUNNING"]
            victim = next((t for t in running if len(t.intermediate_values) >= 3), None)
        assert victim is not None, "no trial reached epoch 3"
        os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err
    trials = journal(results).trials
    rerun = next(t for t in trials if t.system_attrs.get("failed_trial") == victim.number)
    assert rerun.state.name == "COMPLETE" and rerun.params == victim.params
    assert rerun.user_attrs["resumed_from_epoch"] >= 3
    assert rerun.user_attrs["versions"]["backend"] == backend
    assert rerun.user_attrs["epochs_run"] == 40


def test_a_backend_that_is_not_installed_or_not_keras_is_one_line(tmp_path):
    path = write(tmp_path)
    missing = [b for b in BACKENDS if b not in HERE]
    cases = [("numpy", "--backend")] + [(b, "not installed") for b in missing]
    for name, expected in cases:
        proc = tunecb("search", path, "--results", tmp_path / "r", "--backend", name,
                      env=env_for())  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert expected in proc.stderr and proc.stderr.strip().count("\n") == 0
    env = env_for("numpy")  # Keras' own variable, read when no --backend is given
    proc = tunecb("search", path, "--results", tmp_path / "r", env=env)
    assert proc.returncode == 2 and "'numpy' (KERAS_BACKEND)" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_keras_already_running_on_another_backend_is_refused():
    import keras

    from tunecb.errors import ConfigError
    from tunecb.training.backends import select

    running = keras.backend.backend()
    other = next(b for b in BACKENDS if b != running)
    with pytest.raises(ConfigError, match=f"already running on '{running}'"):
        select(other)
    select(running)  # the same one is fine


@pytest.mark.parametrize("library", BACKENDS)
def test_a_data_function_missing_a_backend_library_names_what_to_install(tmp_path, library, cli):
    """As when a tf.data pipeline runs where TensorFlow is not installed (raised for real by
    the data function, whichever libraries this machine has; the search runs here)."""
    path = write(tmp_path)
    text = path.read_text().replace(
        "def load():\n",
        f'def load():\n    raise ModuleNotFoundError("No module named {library!r}", '
        f"name={library!r})\n",
    )
    path.write_text(text)
    code, _, err = cli("search", path, "--results", tmp_path / "r", "--jobs", "0")
    assert code == 2, err
    assert err.strip().count("\n") == 0
    assert f"No module named '{library}'" in err
    assert f'pip install "tunecb[{"cpu" if library == "tensorflow" else library}]"' in err


# A study file whose top level subclasses Keras (a user callback, as Keras' guides write
# them, and as studies/digits_cnn.py's BatchLogger): Keras starts while the file is read.
SUBCLASSING = """
import keras
import numpy as np
import tunecb

study = tunecb.Study(monitor="val_accuracy", epochs=2, batch_size=64, n_trials=2, seed=0{extra})


class Backend(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.model.stop_training = False
        print("TRAINED-ON", keras.backend.backend(), flush=True)


@study.data
def load():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    return (x[:192], y[:192]), (x[192:], y[192:])


@study.model
def build(trial):
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(trial.suggest_int("units", 4, 8)),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


@study.callbacks
def callbacks(trial):
    return [Backend()]
"""

FROM_CODE = """
import sys
import tunecb
result = tunecb.search(sys.argv[1], results=sys.argv[2], backend=sys.argv[3], jobs=0,
                       quiet=True)
print("BEST", result.best_value)
"""


def write_subclassing(folder: Path, extra: str = "") -> Path:
    path = folder / "sub.py"
    path.write_text(SUBCLASSING.format(extra=extra))
    return path


def trained_on(results: Path) -> set[str]:
    study = journal_study(results, "sub")
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 2
    return {t.user_attrs["versions"]["backend"] for t in study.trials}


@pytest.mark.skipif(not OTHERS, reason="only TensorFlow installed")
@pytest.mark.parametrize("mode", ["jobs0", "jobs2", "code"])
def test_a_study_file_that_subclasses_keras_at_import_runs_on_the_backend_asked(tmp_path, mode):
    backend = OTHERS[0]
    path = write_subclassing(tmp_path)
    results = tmp_path / "r"
    if mode == "code":
        script = tmp_path / "run.py"
        script.write_text(FROM_CODE)
        command = [sys.executable, str(script), str(path), str(results), backend]
        proc = subprocess.run(command, capture_output=True, text=True, env=env_for(), timeout=300)
    else:
        jobs = "0" if mode == "jobs0" else "2"
        proc = tunecb("search", path, "--results", results, "--backend", backend,
                      "--jobs", jobs, env=env_for())  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert trained_on(results) == {backend}
    if mode != "jobs2":  # the workers' output is theirs
        assert f"TRAINED-ON {backend}" in proc.stdout


@pytest.mark.skipif(not OTHERS, reason="only TensorFlow installed")
def test_a_backend_declared_too_late_by_such_a_study_file_is_one_line_naming_the_fix(tmp_path):
    backend = OTHERS[0]
    path = write_subclassing(tmp_path, extra=f", backend={backend!r}")
    proc = tunecb("search", path, "--results", tmp_path / "r", "--jobs", "0",
                  env=env_for("tensorflow"))  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr  # no oneDNN notice: the CLI's
    assert f"backend={backend!r} comes too late" in proc.stderr
    assert f"KERAS_BACKEND={backend}" in proc.stderr and f"--backend {backend}" in proc.stderr
    assert not (tmp_path / "r").exists()
