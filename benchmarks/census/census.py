"""Where the suite's CPU goes, per test: a pytest plugin that appends, for every test, its
wall seconds and the CPU seconds of the pytest process and of its reaped child processes
(``RUSAGE_CHILDREN``: a search subprocess counts with the workers it reaped; processes left
to ``init``, such as a killed launcher's workers, are not counted) to ``TUNECB_CENSUS_CPU``.
With ``sitecustomize.py`` beside it, each TensorFlow import is logged to
``TUNECB_CENSUS_TF``. Run from the repository root, one file at a time, niced:

    PYTHONPATH=$PWD:$PWD/benchmarks/census TUNECB_CENSUS_CPU=/tmp/cpu.tsv \\
    TUNECB_CENSUS_TF=/tmp/tf.tsv nice -n 19 python -m pytest -p census tests/e2e/test_faults.py
    cut -f2 /tmp/tf.tsv | sort | uniq -c    # TensorFlow imports per test
"""

from __future__ import annotations

import os
import resource
import time

import pytest


def _cpu() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    started, (own, children) = time.monotonic(), _cpu()
    yield
    own_after, children_after = _cpu()
    path = os.environ.get("TUNECB_CENSUS_CPU")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"{item.nodeid}\t{time.monotonic() - started:.2f}\t"
                      f"{own_after - own:.2f}\t{children_after - children:.2f}\n")  # fmt: skip
