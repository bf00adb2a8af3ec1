"""optuna-dashboard shows what tunecb writes.

A real tunecb search (a completed, a pruned and a failed trial), then the real optuna-dashboard
server started with README's command, read over HTTP through its JSON API (the one its web
page uses): every trial with tunecb's state, value, parameters, per-epoch values and
attributes. A dashboard reading the journal of a running search does not disturb it.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DEFAULT_SETTINGS, write_study

ROOT = Path(__file__).resolve().parents[2]
README_COMMAND = 'optuna-dashboard "$PWD/results/digits/optuna.journal"'

# Trial 1 is pruned at its second epoch, trial 2 fails in the builder; 0 and 3 complete.
PRUNE_ONE = '''
import optuna


class PruneOne(optuna.pruners.BasePruner):
    """Prunes trial 1 at its second epoch, no other."""

    def prune(self, study, trial):
        return trial.number == 1 and max(trial.intermediate_values, default=0) >= 2

'''
SETTINGS = DEFAULT_SETTINGS.replace("n_trials=3", "n_trials=4").replace(
    'pruner="none"', "pruner=PruneOne()"
)
FAIL_TWO = 'if trial.number == 2:\n    raise ValueError("boom")\n'


def digits_study(folder: Path, settings: str = SETTINGS) -> Path:
    """Write the study file ``folder/digits.py`` (results go to ``results/digits``)."""
    path = write_study(folder, name="digits", settings=settings, build_extra=FAIL_TWO)
    path.write_text(PRUNE_ONE + path.read_text())  # the pruner class before the Study
    return path


def search(path: Path, *args: object) -> None:
    from tunecb.cli import main

    assert main(["search", str(path), *map(str, args)]) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dashboard(command: str, cwd: Path) -> Iterator[str]:
    """Run the shell ``command`` (optuna-dashboard ...) on a free loopback port until the
    block ends; yield its base URL once it answers."""
    port = free_port()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    log = cwd / f"dashboard-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {command} --host 127.0.0.1 --port {port}"],
            cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"optuna-dashboard exited: {log.read_text()}"
            try:
                get(base, "/api/studies")
                break
            except OSError:
                assert time.monotonic() < deadline, f"no answer in 60 s: {log.read_text()}"
                time.sleep(0.2)
        yield base
        text = log.read_text()
        assert "Traceback" not in text and "Exception" not in text, text
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def get(base: str, route: str) -> dict:
    with urllib.request.urlopen(base + route, timeout=10) as response:
        assert response.status == 200
        return json.load(response)


def attr_text(value: object) -> str:
    """An attribute value as the dashboard shows it."""
    return value if isinstance(value, str) else json.dumps(value)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_readme_gives_the_dashboard_command():
    readme = (ROOT / "README.md").read_text()
    assert README_COMMAND in readme
    assert "pip install optuna-dashboard" in readme


@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_dashboard_shows_every_trial_as_tunecb_recorded_it(tmp_path, storage):
    path = digits_study(tmp_path)
    results = tmp_path / "results"
    if storage == "journal":
        search(path, "--results", results)
        command, store = README_COMMAND, results / "digits" / "optuna.journal"
    else:  # a database: the dashboard takes the same URL as --storage
        store = tmp_path / "digits.db"
        search(path, "--results", results, "--storage", f"sqlite:///{store}")
        command = f"optuna-dashboard sqlite:///{store}"
    before = sha256(store)

    with dashboard(command, cwd=tmp_path) as base:
        listed = get(base, "/api/studies")["study_summaries"]
        assert [(s["study_name"], s["directions"]) for s in listed] == [("digits", ["maximize"])]
        detail = get(base, f"/api/studies/{listed[0]['study_id']}?after=0")
        importances = get(base, f"/api/studies/{listed[0]['study_id']}/param_importances")

    assert sha256(store) == before  # it only read
    assert detail["name"] == "digits" and detail["has_intermediate_values"]
    assert {a["key"]: a["value"] for a in detail["user_attrs"]}["monitor"] == "val_accuracy"
    trials = detail["trials"]
    assert [t["number"] for t in trials] == [0, 1, 2, 3]
    assert [t["state"] for t in trials] == ["Complete", "Pruned", "Fail", "Complete"]
    folder = results / "digits"
    for shown in trials:
        meta = json.loads((folder / "trials" / str(shown["number"]) / "trial.json").read_text())
        assert shown["state"].upper() == meta["state"]
        assert shown.get("values") == (None if meta["value"] is None else [meta["value"]])
        params = {p["name"]: p["param_external_value"] for p in shown["params"]}
        assert params == {k: str(v) for k, v in meta["params"].items()} and set(params) == {
            "lr",
            "units",
        }
        attrs = {a["key"]: a["value"] for a in shown["user_attrs"]}
        for key in ("best_epoch", "checkpoint", "stop_reason", "epochs_run", "error"):
            assert attrs[key] == attr_text(meta[key]), key
        # One value per epoch run: the monitored value, as pruning saw it.
        history = folder / "trials" / str(shown["number"]) / "history.csv"
        rows = list(csv.DictReader(history.open())) if history.exists() else []
        assert len(rows) == meta["epochs_run"]
        steps = [(v["step"], v["value"]) for v in shown["intermediate_values"]]
        assert steps == [(int(r["epoch"]), pytest.approx(float(r["val_accuracy"]))) for r in rows]
    assert [len(t["intermediate_values"]) for t in trials] == [3, 2, 0, 3]
    stop = [{a["key"]: a["value"] for a in t["user_attrs"]}["stop_reason"] for t in trials]
    assert stop == ["completed", "pruned", "failed", "completed"]
    checkpoints = [{a["key"]: a["value"] for a in t["user_attrs"]}["checkpoint"] for t in trials]
    assert all((folder / c).is_file() for c in checkpoints if c != "null")
    best = max((t for t in trials if t["state"] == "Complete"), key=lambda t: t["values"][0])
    assert [t["number"] for t in detail["best_trials"]] == [best["number"]]
    assert {p["name"] for p in importances["param_importances"][0]} == {"lr", "units"}


def test_a_dashboard_reading_a_running_search_does_not_disturb_it(tmp_path):
    settings = DEFAULT_SETTINGS.replace("n_trials=3", "n_trials=1")
    path = write_study(tmp_path, name="digits", settings=settings)  # no pruning, no failure
    results = tmp_path / "results"
    search(path, "--results", results)  # the journal exists before the dashboard starts
    seen: list[tuple[float, int]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    with dashboard(README_COMMAND, cwd=tmp_path) as base:

        def poll() -> None:
            while not stop.is_set():
                try:
                    seen.append((time.monotonic(), len(get(base, "/api/studies/0")["trials"])))
                except BaseException as exc:
                    errors.append(exc)
                    return
                time.sleep(0.1)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        while not seen and not errors:  # a first read before the search goes on
            time.sleep(0.05)
        started = time.monotonic()
        try:
            search(path, "--results", results, "--n-trials", 6)
        finally:
            ended = time.monotonic()
            stop.set()
            poller.join(timeout=30)
        time.sleep(2.1)  # the dashboard caches a study's trials for 2 s
        final = get(base, "/api/studies/0?after=0")

    assert not errors, errors
    counts = [n for _, n in seen]
    assert counts == sorted(counts) and counts[0] == 1
    assert sum(started <= t <= ended for t, _ in seen) >= 3  # it read while the search wrote
    assert [t["state"] for t in final["trials"]] == ["Complete"] * 6
    journal = results / "digits" / "optuna.journal"
    assert not Path(f"{journal}.lock").exists()
    from tunecb.storage.journal import check_journal

    assert check_journal(journal).ok
    import tunecb

    assert len(tunecb.report(results / "digits")) == 6


def test_dashboard_shows_a_multi_objective_study_and_tunecbs_front(tmp_path):
    """A 3-objective study (journal, no fit): every objective's direction and value, and
    the dashboard's Pareto front (its best trials) is the report's front column."""
    from synthetic import make_big_study

    from tunecb.reporting.data.records import study_records

    make_big_study(tmp_path / "mo3", 30, objectives=3)
    with dashboard(f'optuna-dashboard "{tmp_path / "mo3" / "optuna.journal"}"', tmp_path) as base:
        listed = get(base, "/api/studies")["study_summaries"]
        detail = get(base, f"/api/studies/{listed[0]['study_id']}?after=0")
    assert [s["directions"] for s in listed] == [["maximize", "minimize", "minimize"]]
    records = {r["trial"]: r for r in study_records(tmp_path / "mo3").records}
    for shown in detail["trials"]:
        if shown["state"] == "Complete":
            record = records[shown["number"]]
            assert shown["values"] == [record[n] for n in ("val_accuracy", "params", "latency_ms")]
    front = {n for n, r in records.items() if r["front"]}
    assert front and {t["number"] for t in detail["best_trials"]} == front
