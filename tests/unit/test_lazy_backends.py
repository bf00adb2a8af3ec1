"""A study file that imports TensorFlow (or JAX, or PyTorch) and Keras at its top works in
every mode (issue 21): its imports are lazy while it is read, and whichever of them runs
first, Keras runs before its backend.

The fault: ``tunecb search --jobs 0`` of a study file starting ``import tensorflow as tf``
and ``import keras`` failed with "module 'keras' has no attribute 'backend'": the backend
check (``importlib.util.find_spec("tensorflow")``) ran the lazy TensorFlow first, whose
import looks Keras up (``find_spec("keras")``, in its compat module), which ran the lazy
Keras while TensorFlow was half imported; Keras failed inside, TensorFlow swallowed it, and
an empty Keras module was left behind.

These tests use two small stand-in packages named ``tensorflow`` and ``keras`` that do the
same (in a subprocess, so the real ones are never touched); the real ones are exercised by
the ``--jobs 0`` search of tests/e2e/test_limits.py (its study imports both at its top).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# TensorFlow looks Keras up while it is imported, and survives a Keras that fails then.
FAKE_TF = """
import importlib.util
try:
    importlib.util.find_spec("keras")
except Exception:
    pass
VERSION = "2.99"
"""
# Keras uses its backend while it is imported.
FAKE_KERAS = """
import tensorflow as _tf
backend = "tensorflow " + _tf.VERSION
"""

# The study file's top, then what the search does before and at its first trial.
SCRIPT = """
import importlib.util, sys
from tunecb.study.study_file import load_study_file
from tunecb.training import backends

loaded = load_study_file(sys.argv[1])
assert backends._lazy(sys.modules["keras"]), "keras was not imported lazily"
assert backends._lazy(sys.modules["tensorflow"]), "tensorflow was not imported lazily"
{first}
backends.realize_lazy_backends()
import keras
print(keras.backend)
"""

HEADERS = {
    "tf_then_keras": "import tensorflow as tf\nimport keras\n",
    "keras_then_tf": "import keras\nimport tensorflow as tf\n",
}
FIRSTS = {
    # the backend check of the launcher (the fault): it must not run them at all
    "backend_check": 'assert backends.chosen("tensorflow") == "tensorflow"\n'
    'assert "tensorflow" in backends.installed()\n'
    'assert backends._lazy(sys.modules["tensorflow"]), "the check ran tensorflow"\n'
    'assert backends._lazy(sys.modules["keras"]), "the check ran keras"',
    # any other code that touches the backend first (importlib.util.find_spec, user code)
    "backend_first": 'assert importlib.util.find_spec("tensorflow") is not None\n'
    'assert sys.modules["tensorflow"].VERSION == "2.99"',
}


def _run(tmp_path: Path, header: str, first: str) -> subprocess.CompletedProcess:
    fakes = tmp_path / "fakes"
    for name, text in (("tensorflow", FAKE_TF), ("keras", FAKE_KERAS)):
        (fakes / name).mkdir(parents=True, exist_ok=True)
        (fakes / name / "__init__.py").write_text(textwrap.dedent(text))
    study = tmp_path / "study.py"
    study.write_text(
        header
        + "import tunecb\n"
        + "study = tunecb.Study(monitor='val_loss', epochs=1)\n"
        + "@study.data\ndef load():\n    return None\n"
        + "@study.model\ndef build(trial):\n    return None\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["PYTHONPATH"] = os.pathsep.join((str(fakes), str(ROOT)))
    env["KERAS_BACKEND"] = "tensorflow"
    script = SCRIPT.format(first=first)
    return subprocess.run([sys.executable, "-c", script, str(study)], capture_output=True,
                          text=True, env=env, timeout=60)  # fmt: skip


@pytest.mark.parametrize("first", sorted(FIRSTS))
@pytest.mark.parametrize("header", sorted(HEADERS))
def test_keras_runs_before_its_lazily_imported_backend_whatever_touches_them_first(
    tmp_path, header, first
):
    proc = _run(tmp_path, HEADERS[header], FIRSTS[first])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "tensorflow 2.99"
