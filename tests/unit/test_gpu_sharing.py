"""Several workers per GPU (issue 21): what each worker process is given (its spec's
environment, applied first thing in ``worker_main``), read for every slot. No GPU here: what
a GPU does with it is not tested (see the README)."""

from __future__ import annotations

import pytest

from tunecb.errors import TunecbError
from tunecb.execution._base import Job, Limits
from tunecb.execution.choice import WorkerOptions, choose
from tunecb.execution.processes import ProcessExecutor
from tunecb.execution.sizing import cores

SHARING = {"TF_FORCE_GPU_ALLOW_GROWTH", "XLA_PYTHON_CLIENT_PREALLOCATE",
           "XLA_PYTHON_CLIENT_MEM_FRACTION"}  # fmt: skip


def _envs(executor: ProcessExecutor, backend: str = "tensorflow") -> list[dict[str, str]]:
    job = Job("s.py", {}, Limits(10), epochs=1, backend=backend)
    return [executor.spec(job, slot).env for slot in range(executor.jobs)]


def test_two_workers_on_each_of_two_gpus_are_told_to_share_it():
    executor = choose(WorkerOptions(jobs=4, gpus="0,1", workers_per_gpu=2))
    envs = _envs(executor)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1", "0", "1"]
    for env in envs:
        assert env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"  # TensorFlow: memory growth
        assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"  # JAX: on demand ...
        assert env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.45"  # ... up to its share
    assert (
        _envs(choose(WorkerOptions(jobs=3, gpus="0", workers_per_gpu=3)), "jax")[2][
            "XLA_PYTHON_CLIENT_MEM_FRACTION"
        ]
        == "0.30"
    )


def test_one_worker_per_gpu_keeps_each_backends_own_allocation():
    envs = _envs(choose(WorkerOptions(jobs=2, gpus="0,1")))
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1"]
    assert not SHARING & set().union(*envs)


def test_workers_sharing_gpus_are_capped_at_the_gpus_times_the_share_not_the_cores():
    executor = choose(WorkerOptions(jobs=8, gpus="0,1", workers_per_gpu=3))
    sized, notes = executor.sized(left=None, settings=None, loaded=None)
    assert sized.jobs == min(8, max(6, cores()))
    assert (notes == []) == (sized.jobs == 8)


def test_workers_per_gpu_without_gpus_is_a_one_line_error():
    with pytest.raises(TunecbError, match="--workers-per-gpu 2 needs --gpus"):
        choose(WorkerOptions(jobs=2, workers_per_gpu=2))
