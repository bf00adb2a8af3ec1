"""Import TensorFlow without its C++ start-up chatter on the terminal."""

from __future__ import annotations

import os
import sys


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up chatter (oneDNN, CPU features) hidden.

    It writes to file descriptor 2 at import time whatever TF_CPP_MIN_LOG_LEVEL says; the
    chatter is shown only if the import fails. ``--debug`` skips this.
    """
    if "tensorflow" in sys.modules:
        return
    import tempfile

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
