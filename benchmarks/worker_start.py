"""What a ``--jobs`` worker costs to start: ``spawn`` (a fresh interpreter that imports
TensorFlow itself, as tunecb does today) against a "zygote" (``forkserver`` with
TensorFlow preloaded: each worker is forked from a process that imported it once).

Each worker imports Keras, sets its thread count (as ``tunecb.training.backends.prepare``
does; it must still be possible after the fork), fits a tiny model one epoch, and reports
its own CPU seconds and the wall seconds from the request to the end of its fit. The two
ways alternate, with repeats; the zygote's one-time preload is reported apart.

    nice -n 19 python benchmarks/worker_start.py --workers 3 --repeats 2

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


def _worker(conn, asked: float) -> None:
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)  # fails once a context exists
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    conn.send({"cpu_s": usage.ru_utime + usage.ru_stime, "wall_s": time.time() - asked,
               "threads": len(os.listdir("/proc/self/task"))})  # fmt: skip
    conn.close()


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(method: str, workers: int) -> list[dict]:
    ctx = mp.get_context(method)
    found = []
    for _ in range(workers):
        read, write = ctx.Pipe(duplex=False)
        process = ctx.Process(target=_worker, args=(write, time.time()))
        process.start()
        write.close()
        if not read.poll(600):
            process.kill()
            raise RuntimeError(f"{method}: a worker did not finish its fit within 600 s")
        found.append(read.recv())
        process.join(30)
        assert process.exitcode == 0, (method, process.exitcode)
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    load = [os.getloadavg()]
    from multiprocessing import forkserver

    mp.set_forkserver_preload(["tensorflow"])
    started = time.time()
    forkserver.ensure_running()
    server = forkserver._forkserver._forkserver_pid
    probe = mp.get_context("forkserver").Process(target=time.sleep, args=(0,))
    probe.start()
    probe.join()  # the forkserver forks only once its preload is done
    preload = {"cpu_s": _cpu_of(server), "wall_s": time.time() - started}
    rows = {"spawn": [], "forkserver": []}
    for repeat in range(args.repeats):
        order = ["spawn", "forkserver"] if repeat % 2 == 0 else ["forkserver", "spawn"]
        for method in order:
            rows[method] += run(method, args.workers)
    load.append(os.getloadavg())
    summary = {
        method: {
            "median_cpu_s": statistics.median(r["cpu_s"] for r in found),
            "cpu_s": [round(r["cpu_s"], 2) for r in found],
            "median_wall_s": statistics.median(r["wall_s"] for r in found),
            "wall_s": [round(r["wall_s"], 2) for r in found],
            "threads": sorted({r["threads"] for r in found}),
        }
        for method, found in rows.items()
    }
    result = {"workers_per_run": args.workers, "repeats": args.repeats, "load": load,
              "forkserver_preload": preload, "per_worker": summary}  # fmt: skip
    out = Path(__file__).parent / "out" / "worker_start.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
