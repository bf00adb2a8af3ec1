"""Counts the processes that import TensorFlow (the suite census, see ``census.py``): with
``TUNECB_CENSUS_TF`` set, every Python process started with this folder on ``PYTHONPATH``
appends ``pid, test, argv`` to that file when it first imports ``tensorflow``; the test is
``PYTEST_CURRENT_TEST``, which pytest sets and every child process inherits."""

from __future__ import annotations

import os
import sys

_LOG = os.environ.get("TUNECB_CENSUS_TF")


def _probe_only() -> bool:
    """Whether ``importlib.util.find_spec`` asks (tunecb's check that a backend is
    installed): that imports nothing."""
    frame = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "find_spec" and code.co_filename.endswith("importlib/util.py"):
            return True
        frame = frame.f_back
    return False


class _FirstTensorFlowImport:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" and not _probe_only():
            sys.meta_path.remove(self)
            test = os.environ.get("PYTEST_CURRENT_TEST", "-")
            with open(_LOG, "a", encoding="utf-8") as log:
                log.write(f"{os.getpid()}\t{test}\t{' '.join(sys.argv[:3])[:120]}\n")
        return None


if _LOG:
    sys.meta_path.insert(0, _FirstTensorFlowImport())
