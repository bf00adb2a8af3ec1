"""What TensorFlow writes at its import before it reads any setting.

On CPUs where TensorFlow turns oneDNN on by default (AVX512_VNNI, AMX: an AMD EPYC or a recent
Xeon), ``import tensorflow`` writes ``All log messages before absl::InitializeLog() ...`` and
``oneDNN custom operations are on ...`` to stderr whatever ``TF_CPP_MIN_LOG_LEVEL`` says (only
``TF_ENABLE_ONEDNN_OPTS=0``, which turns oneDNN off, stops them). tunecb filters them out of
its own processes (the CLI, also when a study file imports Keras at its top; the workers;
the zygote: :mod:`tunecb.tf_notices`), so tests of those hold stderr to tunecb's lines
without this allowance. A user's script that imports TensorFlow itself still shows them:
tests of such a script allow exactly these, and only where this machine's TensorFlow
prints them.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

CANDIDATES = ("absl::InitializeLog", "oneDNN custom operations")


@functools.cache
def printed_before_settings() -> tuple[str, ...]:
    """The markers of :data:`CANDIDATES` that a bare ``import tensorflow`` prints here with
    ``TF_CPP_MIN_LOG_LEVEL=2`` (none where TensorFlow honours it from the start)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    proc = subprocess.run(
        [sys.executable, "-c", "import tensorflow"], env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    return tuple(m for m in CANDIDATES if m in proc.stderr)


def without_them(stderr: str) -> str:
    """``stderr`` without the lines TensorFlow printed before it read its settings."""
    markers = printed_before_settings()
    return "\n".join(line for line in stderr.splitlines() if not any(m in line for m in markers))
