"""Which executor runs a search and how many trials it runs at once
(:mod:`tunecb.execution.choice`, each executor's ``sized``): the notes are the ones a user
reads at the start of a search, word for word."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tunecb.errors import StudyFileError, TunecbError
from tunecb.execution import processes, sizing
from tunecb.execution.choice import WorkerOptions, choose, jobs_setting
from tunecb.execution.dask import DaskExecutor
from tunecb.execution.inline import InlineExecutor
from tunecb.execution.processes import ProcessExecutor

SETTINGS = SimpleNamespace(storage=None)
FILE_STUDY = SimpleNamespace(in_code=False)


@pytest.fixture
def machine(monkeypatch):
    """This machine with ``cores`` cores and no GPU."""

    def set_cores(n: int) -> None:
        monkeypatch.setattr(sizing, "cores", lambda: n)
        monkeypatch.setattr(processes, "cores", lambda: n)

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    return set_cores


def test_jobs_come_from_the_flag_then_the_environment_then_auto(monkeypatch):
    monkeypatch.delenv("TUNECB_JOBS", raising=False)
    assert jobs_setting(None) == "auto"
    monkeypatch.setenv("TUNECB_JOBS", " 3 ")
    assert (jobs_setting(None), jobs_setting(0)) == (3, 0)
    monkeypatch.setenv("TUNECB_JOBS", "lots")
    with pytest.raises(TunecbError, match="TUNECB_JOBS='lots': expected auto or an integer"):
        jobs_setting(None)


def test_the_options_choose_the_executor(monkeypatch):
    monkeypatch.delenv("TUNECB_JOBS", raising=False)
    assert isinstance(choose(WorkerOptions(jobs=0)), InlineExecutor)
    auto = choose(WorkerOptions())
    assert isinstance(auto, ProcessExecutor) and auto.jobs is None
    two = choose(WorkerOptions(jobs=2, gpus="0,1", worker_trials=0, worker_memory=0))
    assert (two.jobs, two.gpus) == (2, ("0", "1"))
    assert (two.worker_trials, two.worker_memory_mb) == (None, None)  # 0: never recycle
    with pytest.raises(TunecbError, match="--gpus needs --jobs N"):
        choose(WorkerOptions(gpus="0"))
    with pytest.raises(TunecbError, match="--dask needs --jobs N"):
        choose(WorkerOptions(dask="tcp://localhost:1"))


def test_worker_options_read_parsed_arguments_and_mappings():
    args = SimpleNamespace(jobs=None, gpus=None, dask=None, threads_per_worker=2,
                           worker_trials=5, worker_memory=100, quiet=True)  # fmt: skip
    assert WorkerOptions.of(args) == WorkerOptions(threads_per_worker=2, worker_trials=5,
                                                   worker_memory=100)  # fmt: skip
    assert WorkerOptions.of({"jobs": 3}) == WorkerOptions(jobs=3)


def test_jobs_n_is_capped_at_the_cores_and_at_the_trials_left(machine):
    machine(2)
    sized, notes = ProcessExecutor(jobs=8).sized(None, SETTINGS, FILE_STUDY)
    assert (sized.jobs, notes) == (2, ["--jobs 8 capped to 2: this machine has 2 cores"])
    machine(8)
    sized, notes = ProcessExecutor(jobs=4).sized(1, SETTINGS, FILE_STUDY)
    assert (sized.jobs, notes) == (1, ["--jobs 4 capped to 1: 1 trial left to run"])
    sized, notes = ProcessExecutor(jobs=4, gpus=("0",)).sized(0, SETTINGS, FILE_STUDY)
    assert (sized.jobs, notes) == (4, [])  # nothing left: nothing to say
    sized, notes = DaskExecutor("tcp://h:1", jobs=4).sized(None, SETTINGS, FILE_STUDY)
    assert (sized.jobs, notes) == (4, [])  # a cluster's size is not this machine's


def test_jobs_auto_is_a_worker_per_core_or_this_process(machine):
    machine(4)
    sized, notes = ProcessExecutor(jobs=None).sized(3, SETTINGS, FILE_STUDY)
    assert (sized.mode, sized.workers) == ("processes", 3)
    assert notes == ["--jobs auto: 3 worker processes, one per core (1 thread each); "
                     "--jobs 0 runs trials one at a time in this process"]  # fmt: skip
    sized, notes = ProcessExecutor(jobs=None).sized(1, SETTINGS, FILE_STUDY)
    assert (sized.mode, notes) == ("inline", [])
    machine(1)
    sized, notes = ProcessExecutor(jobs=None).sized(5, SETTINGS, FILE_STUDY)
    assert sized.mode == "inline"
    assert notes == ["--jobs auto: one core: trials run one at a time in this process"]
    sized, notes = ProcessExecutor(jobs=None).sized(0, SETTINGS, FILE_STUDY)
    assert (sized.mode, notes) == ("inline", [])


def test_jobs_auto_keeps_a_study_that_cannot_travel_in_this_process(machine):
    machine(4)

    def portable() -> bytes:
        raise StudyFileError("the study's functions cannot be sent to worker processes")

    study = SimpleNamespace(in_code=True, portable=portable)
    sized, notes = ProcessExecutor(jobs=None).sized(4, SETTINGS, study)
    assert sized.mode == "inline"
    assert notes == ["--jobs auto: trials run one at a time in this process: the study's "
                     "functions cannot be sent to worker processes"]  # fmt: skip
