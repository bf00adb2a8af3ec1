"""Workers forked from the real zygote (Keras on TensorFlow imported once,
:mod:`tunecb.execution.zygote`), many and several at a time, each setting its threads and
fitting a model: none hangs (a fork taken while a thread held a lock would), each can still
set TensorFlow's threads (no TensorFlow context came with the fork), and nothing is left."""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import pytest

from tunecb.execution import zygote
from tunecb.execution.zygote import ForkedProcess, Starts

pytestmark = [
    pytest.mark.skipif(not zygote.supported(), reason="needs Linux 5.4+ (pidfd)"),
    pytest.mark.slow,
]

WORKERS, AT_ONCE = 8, 3


def _fit(index: int, conn) -> None:
    import numpy as np

    from tunecb.training.backends import prepare

    prepare(1, debug=False)
    import keras
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(1)  # RuntimeError after a context
    rng = np.random.default_rng(index)
    x = rng.normal(size=(128, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])  # fmt: skip
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    conn.send((index, tf.config.threading.get_intra_op_parallelism_threads(),
               len(history.history["loss"])))  # fmt: skip


def _one_ends(running: dict, done: list, deadline: float) -> None:
    """Wait for a worker to send its result (before ``deadline``) and exit 0."""
    ready = mp.connection.wait(list(running), timeout=max(0.0, deadline - time.monotonic()))
    assert ready, f"no worker finished its fit in time: {len(done)} done"
    for conn in ready:
        process = running.pop(conn)
        done.append(conn.recv())
        process.join(timeout=60)
        assert process.exitcode == 0


def test_many_workers_forked_from_the_zygote_each_fit_without_a_hang(monkeypatch):
    monkeypatch.delenv(zygote.SWITCH, raising=False)
    ctx = mp.get_context("spawn")
    starts = Starts(ctx, "tensorflow")
    env = {"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": "1"}
    running, done, pids = {}, [], set()
    deadline = time.monotonic() + 600
    try:
        for index in range(WORKERS):
            while len(running) >= AT_ONCE:  # as a search replaces its workers
                _one_ends(running, done, deadline)
            read, write = ctx.Pipe(duplex=False)
            process = starts.start(_fit, (index,), f"w{index}", channel=write, env=env)
            write.close()
            assert isinstance(process, ForkedProcess) and process.pid not in pids
            pids.add(process.pid)
            running[read] = process
        while running:
            _one_ends(running, done, deadline)
    finally:
        for process in running.values():
            process.kill()
            process.join()
        zygote_process = starts.zygote.process if starts.zygote else None
        starts.close()
    assert sorted(done) == [(i, 1, 2) for i in range(WORKERS)]
    assert zygote_process is not None and zygote_process.poll() is not None
    left = [p for p in pids if os.path.exists(f"/proc/{p}")]
    assert not left, f"processes left: {left}"
