"""What building a new model costs on each Keras backend (CPU seconds, fresh process each).

A search builds a new model for every trial, each with other layer sizes. On JAX, Keras'
weight initializers draw through ``jax.random`` programs that XLA compiles once per weight
shape, so every new configuration pays those compiles before its first epoch; TensorFlow
and PyTorch draw eagerly. This builds ``--models`` MLPs of the benchmarks' kind (64 inputs,
two hidden ``Dense`` layers of 16-255 units drawn from a fixed stream, 10 outputs) one after
another in one fresh process per backend, and prints the CPU seconds of each build.

    python benchmarks/build_cost.py --models 8 --backends tensorflow,jax --repeats 2

Writes ``benchmarks/out/build_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import os, sys, time, json
os.environ["KERAS_BACKEND"] = sys.argv[1]
import keras, numpy as np
rng = np.random.default_rng(0)
costs = []
for _ in range(int(sys.argv[2])):
    u1, u2 = (int(u) for u in rng.integers(16, 256, size=2))
    start = time.process_time()
    model = keras.Sequential([
        keras.Input((64,)), keras.layers.Dense(u1, activation="relu"),
        keras.layers.Dense(u2, activation="relu"), keras.layers.Dense(10, activation="softmax"),
    ])
    costs.append(time.process_time() - start)
    float(sum(np.asarray(w).sum() for w in model.weights))  # the values exist
print(json.dumps(costs))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/out/build_cost.json")
    args = parser.parse_args()
    backends = args.backends.split(",")
    runs: dict[str, list[list[float]]] = {b: [] for b in backends}
    for _ in range(args.repeats):
        for backend in backends:  # alternating
            done = subprocess.run(
                [sys.executable, "-c", CHILD, backend, str(args.models)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            runs[backend].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print("| backend | builds | CPU s per build: median [min-max] |")
    print("|---|---|---|")
    summary = {}
    for backend, rows in runs.items():
        costs = [c for row in rows for c in row]
        summary[backend] = {
            "median": statistics.median(costs), "min": min(costs), "max": max(costs),
        }  # fmt: skip
        print(f"| {backend} | {len(costs)} | {summary[backend]['median']:.3f} "
              f"[{summary[backend]['min']:.3f}-{summary[backend]['max']:.3f}] |")  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "models": args.models,
        "load_after": os.getloadavg(), "runs": runs, "summary": summary,
    }, indent=1))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
