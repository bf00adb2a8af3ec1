"""The CPU of one resume of a paused trial: the model its worker kept in memory (variables put
back, fit on: :mod:`tunecb.training.kept_models`) against a new model built, its backup's
``.keras`` weights read and traced again (as every resume did before); and a steady epoch's
CPU in a process that keeps 0 or 16 such models. In one process, alternating, a digits-sized
MLP (64-N-10, dropout, Adam, 16 batches per call as tunecb fits), one epoch resumed.

    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 python benchmarks/resume_cost.py 8

Prints and writes ``benchmarks/out/resume_cost.json`` (CPU ms: median, min, max).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

from tunecb.training import fast_fit
from tunecb.training.trial_env import clear_session
from tunecb.training.variables import put_back, snapshot

rng = np.random.default_rng(0)
ARGS = dict(
    x=rng.random((1437, 64), dtype=np.float32), y=rng.integers(0, 10, 1437),
    validation_data=(rng.random((360, 64), dtype=np.float32), rng.integers(0, 10, 360)),
    batch_size=64, verbose=0,
)  # fmt: skip


def build(units: int) -> keras.Model:
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(units, activation="relu"),
                              keras.layers.Dropout(0.2), keras.layers.Dense(10)])  # fmt: skip
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile("adam", loss, metrics=["accuracy"])
    fast_fit.apply(model, "auto", [], ARGS)
    return model


def resume(mode: str, units: int, folder: str) -> float:
    """CPU seconds of resuming a model paused after one epoch (another trial ran between)."""
    clear_session()
    paused = build(units)
    paused.fit(**ARGS, epochs=1)
    paused.save(f"{folder}/w.keras")
    values = snapshot(paused)
    clear_session()
    build(40).fit(**ARGS, epochs=1)
    start = time.process_time()
    if mode == "kept":
        put_back(paused, values)
        paused.fit(**ARGS, epochs=2, initial_epoch=1)
    else:
        again = build(units)
        again.optimizer.build(again.trainable_variables)
        again.load_weights(f"{folder}/w.keras")
        again.fit(**ARGS, epochs=2, initial_epoch=1)
    return time.process_time() - start


def steady_epoch() -> float:
    """CPU seconds of one steady epoch of a new trial (epochs 2-4)."""
    clear_session()
    model = build(48)
    model.fit(**ARGS, epochs=1)
    start = time.process_time()
    model.fit(**ARGS, epochs=4, initial_epoch=1)
    return (time.process_time() - start) / 3


def main(rounds: int) -> dict:
    found: dict[str, list[float]] = {"kept": [], "disk": [], "epoch, 0 kept": [],
                                     "epoch, 16 kept": []}  # fmt: skip
    kept: list[keras.Model] = []
    with tempfile.TemporaryDirectory() as folder:
        for i in range(rounds):
            for mode in ("kept", "disk") if i % 2 == 0 else ("disk", "kept"):
                found[mode].append(resume(mode, 32 + 8 * (i % 5), folder))
            for many in (False, True) if i % 2 == 0 else (True, False):
                while many and len(kept) < 16:
                    model = build(48)
                    model.fit(**ARGS, epochs=1)
                    kept.append(model)
                if not many:
                    kept.clear()
                found[f"epoch, {16 if many else 0} kept"].append(steady_epoch())
    result = {
        name: {"median_ms": round(1000 * statistics.median(v), 1),
               "min_ms": round(1000 * min(v), 1), "max_ms": round(1000 * max(v), 1), "n": len(v)}
        for name, v in found.items()
    }  # fmt: skip
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


if __name__ == "__main__":
    out = main(int(sys.argv[1]) if len(sys.argv) > 1 else 8)
    print(json.dumps(out, indent=1))
    target = Path(__file__).resolve().parent / "out" / "resume_cost.json"
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(out, indent=1) + "\n")
