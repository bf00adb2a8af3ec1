"""What a ``--jobs`` worker costs to start, through tunecb's own start path
(:class:`tunecb.execution.zygote.Starts`, as ``processes._Supervisor`` calls it): ``spawn``
(a fresh interpreter that imports TensorFlow itself) against the zygote (each worker forked
from a process that imported Keras and the worker's modules once).

Each run starts ``--workers`` workers at once, as a search does. Each worker prepares the
backend as a real one does (``tunecb.training.backends.prepare`` with one thread: still
possible after the fork, checked), fits a tiny model one epoch, and reports its own CPU
seconds and the wall seconds from the request to the end of its fit; then, all of them
alive, the launcher reads each one's memory (USS: its own pages; PSS: its share of the
pages it shares) and ends them. The whole run's CPU (the zygote included, from
``RUSAGE_CHILDREN``) is the load-independent total. The modes alternate, with repeats.

    nice -n 19 python benchmarks/worker_start.py --workers 3 --repeats 3

Results: benchmarks/out/worker_start.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import time
from pathlib import Path

import psutil

from tunecb.execution.zygote import ForkedProcess, Starts

ENV = {"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": "1"}


def _worker(asked: float, conn) -> None:
    import numpy as np

    from tunecb.training.backends import prepare

    prepare(1, debug=False)
    import keras
    import tensorflow as tf

    assert tf.config.threading.get_intra_op_parallelism_threads() == 1
    x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    conn.send({"cpu_s": usage.ru_utime + usage.ru_stime, "wall_s": time.time() - asked,
               "threads": len(os.listdir("/proc/self/task"))})  # fmt: skip
    time.sleep(600)  # until the launcher has read its memory and kills it


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(mode: str, workers: int) -> dict:
    os.environ["TUNECB_WORKER_START"] = mode
    ctx = mp.get_context("spawn")
    before, started = _children_cpu(), time.time()
    starts = Starts(ctx, "tensorflow")
    handles, pipes = [], []
    for index in range(workers):
        read, write = ctx.Pipe(duplex=False)
        handle = starts.start(_worker, (time.time(),), f"w{index}", channel=write, env=ENV)
        write.close()
        handles.append(handle)
        pipes.append(read)
    assert all(isinstance(h, ForkedProcess) == (mode == "zygote") for h in handles), mode
    rows = []
    for read, handle in zip(pipes, handles, strict=True):
        if not read.poll(900):
            raise RuntimeError(f"{mode}: a worker did not finish its fit within 900 s")
        row = read.recv()
        memory = psutil.Process(handle.pid).memory_full_info()
        row |= {"uss_mb": memory.uss / 2**20, "pss_mb": memory.pss / 2**20,
                "rss_mb": memory.rss / 2**20}  # fmt: skip
        rows.append(row)
    wall = time.time() - started
    for handle in handles:
        handle.kill()
        handle.join()
    starts.close()
    return {"workers": rows, "run_wall_s": wall, "run_cpu_s": _children_cpu() - before}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.update(ENV)  # both ways: the environment a worker of a search has
    load = [os.getloadavg()]
    runs: dict[str, list[dict]] = {"spawn": [], "zygote": []}
    for repeat in range(args.repeats):
        order = ["spawn", "zygote"] if repeat % 2 == 0 else ["zygote", "spawn"]
        for mode in order:
            runs[mode].append(run(mode, args.workers))
            print(mode, json.dumps(runs[mode][-1]["run_cpu_s"]), flush=True)
    load.append(os.getloadavg())
    summary = {}
    for mode, found in runs.items():
        rows = [r for one in found for r in one["workers"]]
        summary[mode] = {
            key: {"median": round(statistics.median(r[key] for r in rows), 3),
                  "min": round(min(r[key] for r in rows), 3),
                  "max": round(max(r[key] for r in rows), 3)}
            for key in ("cpu_s", "wall_s", "uss_mb", "pss_mb", "rss_mb")
        }  # fmt: skip
        summary[mode]["run_cpu_s"] = [round(one["run_cpu_s"], 2) for one in found]
        summary[mode]["run_wall_s"] = [round(one["run_wall_s"], 2) for one in found]
        summary[mode]["threads"] = sorted({r["threads"] for r in rows})
    result = {"workers_per_run": args.workers, "repeats": args.repeats, "load": load,
              "per_worker": summary}  # fmt: skip
    out = Path(__file__).parent / "out" / "worker_start.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
