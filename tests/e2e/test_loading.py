"""A checkpoint loads on the backend Keras runs on, without importing the backend that wrote it.

A model compiled on PyTorch names its optimizer by the torch backend's module; loading it in a
TensorFlow process imported PyTorch (a CUDA build of torch imported after TensorFlow dies of
SIGSEGV; without torch installed: "No module named 'torch'"). Each load runs in a fresh process
in which importing torch fails, so that a load that reaches for it is seen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from tunecb.training.backends import installed

WRITE = """
import keras, numpy as np
keras.utils.set_random_seed(0)
x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
y = (x[:, 0] > 0).astype("int32")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
model.fit(x, y, epochs=2, verbose=0)
model.save(r"{path}")
print(model.evaluate(x, y, verbose=0)[0])
"""

LOAD = """
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("this test forbids importing torch: " + name)
        return None

sys.meta_path.insert(0, NoTorch())
import numpy as np
from tunecb.training.loading import load_model
model = load_model(r"{path}")
x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
y = (x[:, 0] > 0).astype("int32")
import keras
print(keras.backend.backend(), type(model.optimizer).__module__, int(model.optimizer.iterations),
      model.evaluate(x, y, verbose=0)[0], "torch" in sys.modules)
"""


def _run(code: str, backend: str) -> str:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
        timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def _as_if_written_on_torch(path: Path) -> None:
    """Rewrite a checkpoint's optimizer module as Keras 3.15 on PyTorch writes it."""
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    assert config["compile_config"]["optimizer"]["module"] == "keras.optimizers"
    optimizer = config["compile_config"]["optimizer"]
    optimizer.update(module="keras.src.backend.torch.optimizers.torch_adam", registered_name="Adam")
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)


def test_a_pytorch_checkpoint_loads_on_tensorflow_without_importing_torch(tmp_path):
    path = tmp_path / "best.keras"
    loss = float(_run(WRITE.format(path=path), "tensorflow"))
    _as_if_written_on_torch(path)
    backend, module, steps, loaded, torch_imported = _run(
        LOAD.format(path=path), "tensorflow"
    ).split()
    assert (backend, module, steps, torch_imported) == (
        "tensorflow",
        "keras.src.optimizers.adam",
        "4",
        "False",
    )
    assert float(loaded) == pytest.approx(loss, rel=1e-5)


@pytest.mark.skipif("torch" not in installed(), reason="PyTorch is not installed")
@pytest.mark.parametrize("reader", [b for b in installed() if b != "torch"])
def test_a_checkpoint_written_on_pytorch_evaluates_the_same_on_another_backend(tmp_path, reader):
    path = tmp_path / "best.keras"
    loss = float(_run(WRITE.format(path=path), "torch"))
    backend, _, steps, loaded, torch_imported = _run(LOAD.format(path=path), reader).split()
    assert (backend, steps, torch_imported) == (reader, "4", "False")
    assert float(loaded) == pytest.approx(loss, rel=1e-4)
