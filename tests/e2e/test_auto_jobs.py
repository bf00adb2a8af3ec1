"""``--jobs auto``, the default: one worker process per core when that pays, else this process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_workers import search, write_fast_study

from tunecb.execution.sizing import auto_jobs, cores, gpu_visible

TWO_CORES = pytest.mark.skipif(cores() < 2, reason="needs 2 usable cores")


def default_env(**extra: str) -> dict[str, str]:
    """The environment of a user who set nothing: no TUNECB_JOBS (the suite sets it to 0)."""
    env = {k: v for k, v in os.environ.items() if k != "TUNECB_JOBS"}
    return env | extra


def events(stdout: str, kind: str) -> list[dict]:
    rows = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [r for r in rows if r.get("event") == kind]


@TWO_CORES
def test_the_default_runs_one_worker_per_core_with_one_thread_each(tmp_path):
    report = tmp_path / "report"
    report.mkdir()
    path = write_fast_study(tmp_path, n=4)
    proc = search(path, tmp_path / "r", "--log-format", "json",
                  env=default_env(TUNECB_TEST_REPORT=str(report)))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (start,) = events(proc.stdout, "start")
    workers = min(cores(), 4)
    assert (start["mode"], start["workers"]) == ("processes", workers)
    assert any(f"--jobs auto: {workers} worker processes, one per core" in n
               for n in start["notes"])  # fmt: skip
    seen = [json.loads(p.read_text()) for p in report.glob("*.json")]
    assert len(seen) == workers  # each worker loaded the data once, in its own process
    assert {s["threads"] for s in seen} == {max(1, cores() // workers)}
    (summary,) = events(proc.stdout, "summary")
    assert summary["done"] == 4


# The launcher decides in-process or workers; the searches below that run inline run in the
# test's process (cli), with the user's environment set by monkeypatch.


@TWO_CORES
def test_one_trial_left_runs_in_this_process_without_a_note(tmp_path, cli, monkeypatch):
    path = write_fast_study(tmp_path, n=1)
    monkeypatch.delenv("TUNECB_JOBS")
    code, out, err = cli("search", path, "--results", tmp_path / "r", "--log-format", "json")
    assert code == 0, err
    (start,) = events(out, "start")
    assert (start["mode"], start["workers"]) == ("inline", 1)
    assert not any("--jobs auto" in n for n in start["notes"])


def test_jobs_0_and_the_environment_variable_run_trials_in_this_process(tmp_path, cli, monkeypatch):
    path = write_fast_study(tmp_path, n=2)
    for flags, jobs in ((["--jobs", "0"], None), ([], "0")):
        if jobs is None:
            monkeypatch.delenv("TUNECB_JOBS", raising=False)
        else:
            monkeypatch.setenv("TUNECB_JOBS", jobs)
        code, out, err = cli("search", path, "--results", tmp_path / "r", "--log-format",
                             "json", *flags)  # fmt: skip
        assert code == 0, err
        (start,) = events(out, "start")
        assert start["mode"] == "inline"


def test_a_bad_jobs_value_is_one_line_and_exit_2(tmp_path):
    path = write_fast_study(tmp_path, n=2)
    bad_flag = search(path, tmp_path / "r", "--jobs", "many", env=default_env())
    assert bad_flag.returncode == 2
    assert "--jobs" in bad_flag.stderr and "'many'" in bad_flag.stderr
    assert "Traceback" not in bad_flag.stderr
    bad_env = search(path, tmp_path / "r", env=default_env(TUNECB_JOBS="lots"))
    assert bad_env.returncode == 2
    assert bad_env.stderr.strip().count("\n") == 0
    assert "TUNECB_JOBS='lots'" in bad_env.stderr
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_auto_jobs_policy(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert not gpu_visible()
    n = cores()
    assert auto_jobs(1) == (1, "")
    assert auto_jobs(None, "sqlite:///:memory:")[0] == 1
    expected = 1 if n < 2 else min(n, 3)
    assert auto_jobs(3)[0] == expected


def test_dask_and_gpus_still_need_an_explicit_jobs(tmp_path):
    path: Path = write_fast_study(tmp_path, n=2)
    proc = search(path, tmp_path / "r", "--gpus", "0", env=default_env())
    assert proc.returncode == 2 and "--gpus needs --jobs N" in proc.stderr
