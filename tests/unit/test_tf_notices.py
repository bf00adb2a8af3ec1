"""TensorFlow's oneDNN start-up notices are kept off fd 2 in the processes tunecb owns, and
nothing else is (tunecb.tf_notices): a fake ``tensorflow`` package that writes the two
notices and a real error to fd 2 while it is imported, in real subprocesses (the CLI, or a
process that imports it as a worker does). No TensorFlow: each case costs a fraction of a
second."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tunecb.tf_notices import is_notice

ROOT = Path(__file__).resolve().parents[2]
ABSL = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
ONEDNN = (
    "I0000 00:00:1796545467.007005   21340 port.cc:153] oneDNN custom operations are on. "
    "You may see slightly different numerical results due to floating-point round-off errors "
    "from different computation orders. To turn them off, set the environment variable "
    "`TF_ENABLE_ONEDNN_OPTS=0`."
)
ERROR = "E0000 00:00:1796545467.1   21340 cuda_dnn.cc:8] a real error, not a notice"
LIKE = "I0000 00:00:17.5  21 port.cc:153] oneDNN custom operations are on (said otherwise)"


def _fake_tensorflow(folder: Path, then: str = "") -> Path:
    """A ``tensorflow`` package in ``folder`` that writes, as TensorFlow's C++ does, straight
    to fd 2 while it is imported, then runs ``then``."""
    package = folder / "tensorflow"
    package.mkdir()
    lines = "".join(f"{line}\n" for line in (ABSL, ONEDNN, ERROR, ABSL, ONEDNN, LIKE))
    (package / "__init__.py").write_text(
        f"import os, sys\nos.write(2, {lines.encode()!r})\n"
        "sys.stderr.write('python-level warning\\n')\nVALUE = 1\n" + textwrap.dedent(then)
    )
    return folder


def _run(args: list[str], folder: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environ |= {"PYTHONPATH": f"{folder}{os.pathsep}{ROOT}", **env}
    return subprocess.run(
        [sys.executable, *args], cwd=folder, env=environ, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def _imported(folder: Path, show: bool = False, **env: str) -> subprocess.CompletedProcess:
    """A process that imports the fake as a worker does (tensorflow_filtered)."""
    code = (
        "from tunecb.tf_notices import tensorflow_filtered\n"
        f"with tensorflow_filtered(show={show}):\n"
        "    import tensorflow\n"
        "print('imported', tensorflow.VALUE)\n"
    )
    return _run(["-c", code], folder, **env)


def _kept(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line in (ABSL, ONEDNN, ERROR, LIKE)]


def test_the_notices_are_matched_whole():
    assert is_notice(ABSL) and is_notice(ONEDNN)
    for other in (ERROR, LIKE, ONEDNN + " and more", "x" + ABSL, ""):
        assert not is_notice(other), other


def test_the_cli_loading_a_study_file_that_imports_it_shows_the_error_not_the_notices(
    tmp_path,
):
    folder = _fake_tensorflow(tmp_path)
    (folder / "study.py").write_text("import tensorflow\nprint('top', tensorflow.VALUE)\n")
    proc = _run(["-m", "tunecb", "search", "study.py"], folder)
    assert proc.returncode == 2 and "declares no study" in proc.stderr, proc.stderr
    assert "top 1" in proc.stdout  # the file's top ran the import, in the CLI's process
    assert _kept(proc.stderr) == [ERROR, LIKE], proc.stderr
    assert "python-level warning" in proc.stderr
    debug = _run(["-m", "tunecb", "search", "study.py", "--debug"], folder)
    assert _kept(debug.stderr) == [ABSL, ONEDNN, ERROR, ABSL, ONEDNN, LIKE], debug.stderr


def test_a_workers_import_of_keras_shows_the_error_not_the_notices(tmp_path):
    """backends.import_quietly, as a worker and the zygote import Keras (a fake Keras here,
    that writes as TensorFlow does when Keras imports it)."""
    folder = _fake_tensorflow(tmp_path)
    keras = folder / "keras"
    (keras / "backend").mkdir(parents=True)
    (keras / "__init__.py").write_text("import tensorflow\nfrom keras import backend\n")
    (keras / "backend" / "__init__.py").write_text("def backend():\n    return 'tensorflow'\n")
    code = "from tunecb.training.backends import import_quietly\nimport_quietly()\nprint('ok')"
    proc = _run(["-c", code], folder)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr
    assert _kept(proc.stderr) == [ERROR, LIKE], proc.stderr


def test_a_worker_like_import_drops_only_the_notices(tmp_path):
    proc = _imported(_fake_tensorflow(tmp_path))
    assert proc.returncode == 0 and "imported 1" in proc.stdout, proc.stderr
    assert _kept(proc.stderr) == [ERROR, LIKE], proc.stderr


def test_an_import_that_raises_shows_everything_then_its_traceback(tmp_path):
    proc = _imported(_fake_tensorflow(tmp_path, then="raise ImportError('broken build')\n"))
    assert proc.returncode == 1
    assert _kept(proc.stderr) == [ABSL, ONEDNN, ERROR, ABSL, ONEDNN, LIKE], proc.stderr
    assert proc.stderr.index(LIKE) < proc.stderr.index("ImportError: broken build")


def test_a_process_that_dies_during_the_import_shows_everything(tmp_path):
    then = "os.write(2, b'F0000 fatal: check failed\\n'); os.abort()\n"
    proc = _imported(_fake_tensorflow(tmp_path, then=then))
    assert proc.returncode < 0  # SIGABRT
    assert _kept(proc.stderr) == [ABSL, ONEDNN, ERROR, ABSL, ONEDNN, LIKE], proc.stderr
    assert "F0000 fatal: check failed" in proc.stderr


@pytest.mark.parametrize(
    "how", [{"show": True}, {"TF_CPP_MIN_LOG_LEVEL": "0"}], ids=["debug", "tf-info-logs"]
)
def test_debug_or_tensorflows_info_level_shows_everything(tmp_path, how):
    proc = _imported(_fake_tensorflow(tmp_path), **how)
    assert proc.returncode == 0, proc.stderr
    assert _kept(proc.stderr) == [ABSL, ONEDNN, ERROR, ABSL, ONEDNN, LIKE], proc.stderr
