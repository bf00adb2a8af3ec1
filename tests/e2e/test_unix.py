"""``tunecb`` as a Unix tool: output closed early (``| head -1``) ends the printing quietly
(exit 0: the reader has what it wanted; a search runs on to its end), a study file whose
name is a Python identifier in any script names its study, and a terminal that cannot encode
a character gets a stand-in, never a crash.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ENV = {**os.environ, "TUNECB_JOBS": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}


def closed_early(*args: object, env: dict | None = None) -> subprocess.CompletedProcess:
    """``tunecb ARGS`` with its stdout a pipe whose reader is gone before anything is
    written (what ``| head -1`` does to all but the first line, without the race)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunecb", *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env or ENV, text=True,
    )  # fmt: skip
    proc.stdout.close()
    _, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", err)


@pytest.fixture(scope="module")
def unicode_study(tmp_path_factory) -> Path:
    """A finished 1-trial search of a study file named ``données.py``."""
    from conftest import DEFAULT_SETTINGS, write_study

    from tunecb.cli import main

    folder = tmp_path_factory.mktemp("unicode")
    settings = DEFAULT_SETTINGS.replace("n_trials=3", "n_trials=1").replace("epochs=3", "epochs=1")
    path = write_study(folder, name="données", settings=settings)
    assert main(["search", str(path), "--results", str(folder / "results")]) == 0
    return folder / "results" / "données"


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["report", "--help"],
        ["report", "{study}"],
        ["report", "{study}", "--format", "csv"],
        ["report", "{study}", "--format", "json"],
        ["report", "{study}", "--trial", "0"],
    ],
    ids=lambda args: " ".join(args).replace("{study}", "STUDY"),
)
def test_output_closed_early_ends_the_command_quietly(args, finished_study):
    run = closed_early(*(a.format(study=finished_study) for a in args))
    assert run.returncode == 0 and run.stderr == "", run.stderr


def test_report_through_head_prints_its_first_line_only(finished_study):
    command = f"{shlex.quote(sys.executable)} -m tunecb report {finished_study} | head -1"
    run = subprocess.run(
        ["bash", "-c", f"{command}; echo \"exit ${{PIPESTATUS[0]}}\""],
        capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip
    assert run.stdout.splitlines() == ["study 'fin': val_accuracy (maximize); 4 complete", "exit 0"]
    assert run.stderr == ""


@pytest.mark.slow
def test_a_search_whose_output_closes_early_runs_to_its_end(study_file, tmp_path):
    """``search ... | head -1``: the trials still run (Keras' epoch lines of ``--verbose 2``
    included: a write that fails must not fail a trial), and the search exits 0. (It
    stopped at the next line with "internal error: BrokenPipeError", exit code 1.)"""
    path = study_file(settings="monitor='val_accuracy', epochs=1, n_trials=2, seed=0")
    results = tmp_path / "results"
    run = closed_early("search", path, "--results", results, "--verbose", "2")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr and "error" not in run.stderr, run.stderr[-2000:]
    records = [json.loads((results / "tiny" / "trials" / n / "trial.json").read_text())
               for n in ("0", "1")]  # fmt: skip
    assert [r["state"] for r in records] == ["COMPLETE", "COMPLETE"]


def test_a_study_file_named_in_any_script_names_its_study(unicode_study, cli):
    """``données.py`` is a Python module name; it gave "default name 'données': a study name
    is letters, digits, ...". Its folder, the report and the JSON and HTML carry the name."""
    assert unicode_study.is_dir() and (unicode_study / "trials" / "0" / "best.keras").exists()
    code, out, _ = cli("report", unicode_study)
    assert code == 0 and out.startswith("study 'données': val_accuracy")
    code, out, _ = cli("report", unicode_study, "--format", "json")
    assert code == 0 and "/données/trials/0/" in json.loads(out)[0]["checkpoint"]
    trial = json.loads((unicode_study / "trials" / "0" / "trial.json").read_text("utf-8"))
    assert trial["study"] == "données"
    page = unicode_study.parent / "r.html"
    code, _, _ = cli("report", unicode_study, "--format", "html", "--output", page)
    assert code == 0 and "<title>tunecb report: données</title>" in page.read_text("utf-8")


@pytest.mark.parametrize("stem", ["模型", "_scratch", "run-2.v1"])
def test_names_python_or_the_shell_accept_are_study_names(stem, study_file):
    from tunecb.study.settings import resolve
    from tunecb.study.study_file import load_study_file

    loaded = load_study_file(study_file(name=stem))
    assert resolve(loaded.study.settings, {}, default_name=loaded.default_name).name == stem


@pytest.mark.parametrize("stem", ["my study", "a+b", "-x"])
def test_a_study_file_name_that_cannot_name_a_study_says_study_name(stem, study_file, cli):
    code, _, err = cli("search", study_file(name=stem))
    assert code == 2
    assert err.startswith(f"tunecb search: error: the study file's name {stem!r} cannot name")
    assert "--study-name NAME" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "encoding", [{"PYTHONIOENCODING": "ascii"}, {"LC_ALL": "C", "PYTHONUTF8": "0"}]
)
def test_an_ascii_terminal_gets_stand_ins_not_a_crash(encoding, unicode_study):
    """It gave "internal error: UnicodeEncodeError: 'ascii' codec can't encode '\\xe9'"."""
    env = {**ENV, **encoding}
    env.pop("PYTHONIOENCODING", None) if "LC_ALL" in encoding else None
    for args in ([], ["--format", "markdown"]):
        run = subprocess.run(
            [sys.executable, "-m", "tunecb", "report", str(unicode_study), *args],
            capture_output=True, env=env, timeout=300,
        )  # fmt: skip
        assert run.returncode == 0 and run.stderr == b"", run.stderr
        if not args:  # the name from the storage, escaped; "·" as " - "
            assert b"study 'donn\\xe9es'" in run.stdout and b" - " in run.stdout
    csv = subprocess.run(
        [sys.executable, "-m", "tunecb", "report", str(unicode_study), "--format", "csv"],
        capture_output=True, env=env, timeout=300,
    )  # fmt: skip
    assert csv.returncode == 0 and "données".encode() in csv.stdout  # data stays UTF-8
