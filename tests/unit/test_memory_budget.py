"""``--jobs auto`` within the machine's memory (issue 21): each worker loads its own copy of
the data, so the workers chosen for the cores are capped at what the memory holds, with a
one-line note. The data's size comes from the study's data fingerprint; no training."""

from __future__ import annotations

import pytest

from tunecb.execution import sizing
from tunecb.execution.choice import within_memory
from tunecb.execution.inline import InlineExecutor
from tunecb.execution.processes import ProcessExecutor

BIG = {"hash": "x", "parts": {"train": "float32[1000000,512] int64[1000000]",
                              "validation": "float32[100000,512] int64[100000]"}}  # fmt: skip


def test_the_data_size_is_read_off_the_fingerprint():
    assert sizing.data_mb(BIG) == pytest.approx((1_100_000 * 512 * 4 + 1_100_000 * 8) / 2**20)
    assert sizing.data_mb({"parts": {"train": "<dataset (TensorSpec...)> cardinality 3"}}) is None
    assert sizing.data_mb(None) is None


def test_auto_workers_that_would_not_fit_in_memory_are_fewer_and_it_is_said(monkeypatch):
    monkeypatch.setattr(sizing, "available_mb", lambda: 12_000.0)  # 11.7 GiB free
    executor, notes = within_memory(ProcessExecutor(jobs=8), True, BIG)
    per_worker = sizing.WORKER_BASE_MB + sizing.DATA_COPIES * sizing.data_mb(BIG)
    assert executor.jobs == int(0.9 * 12_000 // per_worker) == 2
    assert notes == [
        "--jobs auto: 2 workers, not 8: each loads its own copy of the data (2.1 GiB; about "
        "4.8 GiB a worker) and 11.7 GiB of memory is available"
    ]


def test_nothing_is_capped_without_a_size_with_room_or_for_an_explicit_jobs(monkeypatch):
    monkeypatch.setattr(sizing, "available_mb", lambda: 12_000.0)
    workers = ProcessExecutor(jobs=8)
    assert within_memory(workers, True, None) == (workers, [])  # first run: no size yet
    assert within_memory(workers, False, BIG) == (workers, [])  # --jobs 8: as asked
    inline = InlineExecutor()
    assert within_memory(inline, True, BIG) == (inline, [])
    monkeypatch.setattr(sizing, "available_mb", lambda: 500_000.0)
    assert within_memory(workers, True, BIG) == (workers, [])
