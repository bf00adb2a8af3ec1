"""Errors tunecb raises on purpose.

Two kinds, as in KerasTuner: a :class:`TunecbError` stops the whole search (bad input,
a broken study file, a storage that cannot be reached); an exception raised by the
user's code inside one trial only fails that trial.
"""

from __future__ import annotations

import re
from pathlib import Path

from tunecb.wording import size_text


def first_line(text: str | None, limit: int = 300) -> str:
    r"""The first line of ``text``, cut to ``limit`` characters (for one-line messages).

    >>> first_line("ValueError: bad\n  detail")
    'ValueError: bad'
    """
    lines = (text or "").strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


# TensorFlow's decorations of an op error: the node and the op, after the reason.
_TF_NOISE = re.compile(r"\[\[\{\{node .*?\}\}\]\]|\[Op:[^\]]*\]|\{\{function_node [^}]*\}\}")


def cause_line(exc: BaseException) -> str:
    r"""The line of an error's message that says what went wrong: the first, except for
    framework errors that put it last (TensorFlow's "Graph execution error:" is followed
    by a stack of the graph's frames; the reason is the last line).

    >>> cause_line(ValueError("bad shape\n  more"))
    'bad shape'
    >>> cause_line(RuntimeError("Graph execution error:\n\nDetected at node x\n  File \"a.py\", "
    ...     "line 1\n\nReceived a label value of 18 which is outside the valid range of [0, 10)."
    ...     "\n\t [[{{node x}}]] [Op:__inference_f_1]"))
    'Received a label value of 18 which is outside the valid range of [0, 10).'
    >>> cause_line(SystemExit(3))
    'sys.exit(3) was called'
    """
    if isinstance(exc, SystemExit):
        return f"sys.exit({exc.code!r}) was called" if exc.code is not None else "sys.exit()"
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "raised by code, not by Ctrl-C" if isinstance(exc, KeyboardInterrupt) else ""
    if lines[0].startswith("Graph execution error") or "Detected at node" in text:
        for line in reversed(lines):
            cleaned = _TF_NOISE.sub("", line).strip()
            if cleaned and not cleaned.startswith(("File ", "Detected at node")):
                return cleaned
    return lines[0]


def raised_at(exc: BaseException, path: str | Path | None = None) -> str | None:
    """``"tiny.py:42 in build()"``: the innermost frame of ``exc``'s traceback in ``path``
    (the study file), else in code outside tunecb and the installed libraries."""
    import traceback

    target = str(Path(path).resolve()) if path is not None else None
    frames = traceback.extract_tb(exc.__traceback__)
    chosen = None
    for frame in frames:
        file = frame.filename
        if (target is not None and str(Path(file).resolve()) == target) or (
            target is None and not is_library_file(file)
        ):
            chosen = frame
    if chosen is None and target is not None:
        return raised_at(exc, None)
    if chosen is None:
        return None
    return f"{Path(chosen.filename).name}:{chosen.lineno} in {chosen.name}()"


def is_library_file(file: str) -> bool:
    """Whether ``file`` is tunecb's or an installed library's (not the user's code)."""
    return (
        "site-packages" in file or "dist-packages" in file or file.startswith("<frozen")
        or f"{Path(__file__).parent}" in file or "/lib/python3" in file
    )  # fmt: skip


def describe_error(exc: BaseException, path: str | Path | None = None, limit: int = 2000) -> str:
    """An error of user code as tunecb stores and shows it: a first line with the type, the
    informative line (:func:`cause_line`) and where it was raised; then the whole message
    when it says more, bounded (TensorFlow's run to pages).

    >>> describe_error(ValueError("bad"))
    'ValueError: bad'
    """
    cause = cause_line(exc)
    head = f"{type(exc).__name__}: {cause}" if cause else type(exc).__name__
    where = raised_at(exc, path)
    if where:
        head += f" (at {where})"
    message = str(exc).strip()
    text = head if message in ("", cause) or isinstance(exc, SystemExit) else f"{head}\n{message}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class TunecbError(Exception):
    """Base class: a problem the user can fix. The CLI prints it as one line.

    ``exit_code`` is what ``tunecb`` exits with (2: bad input).
    """

    exit_code = 2


class StudyFileError(TunecbError):
    """The study file is missing, does not import, or declares no usable study."""


class ConfigError(TunecbError):
    """A setting (study file field or CLI flag) has an invalid value."""


class ModelError(TunecbError):
    """The model builder returned something that cannot be trained."""


class MonitorError(TunecbError):
    """The monitored metric is not among the metrics the model logs."""


class StorageError(TunecbError):
    """The Optuna storage or the study in it cannot be opened."""


class ResultsError(TunecbError):
    """The results folder cannot be written or read."""


class CheckpointError(ResultsError):
    """A trial's checkpoint cannot be loaded: it is unreadable (truncated, empty,
    overwritten), or it holds code that Keras' safe loading refuses to run."""


class SearchFailed(TunecbError):
    """The search stopped because its trials keep failing."""

    exit_code = 1


class WorkerFault(TunecbError):
    """A worker process failed for a reason outside the study (it crashed, the storage it
    writes to went away): the search cannot finish; exit code 1."""

    exit_code = 1


SEARCH_SPACE_FIX = (
    "free some space, keep fewer checkpoints (--keep-checkpoints K), or pass another "
    "--results folder; finished trials and checkpoints are kept, and the same command "
    "continues the study"
)


class DiskFull(ResultsError):
    """A write failed for lack of space (``ENOSPC``, or a disk quota): the search stops
    (exit code 1). The file being written is left as it was, and its temporary file removed.

    ``needed``: about how many bytes the write needed (``None``: unknown); ``free``: the bytes
    left on the path's filesystem; ``fix``: what to do, for the command that wrote.

    >>> print(DiskFull("r/s/trials/3/best.keras", 3_565_158, 1024, fix="free some space"))
    ... # doctest: +NORMALIZE_WHITESPACE
    no space left on device to write r/s/trials/3/best.keras (it needs about 3.4 MiB;
    1.0 KiB is free there); free some space
    """

    exit_code = 1

    def __init__(
        self,
        path: str | Path,
        needed: int | None = None,
        free: int | None = None,
        fix: str = SEARCH_SPACE_FIX,
    ) -> None:
        super().__init__(path, needed, free, fix)  # every argument: it pickles
        self.path, self.needed, self.free, self.fix = Path(path), needed, free, fix

    def __str__(self) -> str:
        sizes = []
        if self.needed:
            sizes.append(f"it needs about {size_text(self.needed)}")
        if self.free is not None:
            sizes.append(f"{size_text(self.free)} is free there")
        detail = f" ({'; '.join(sizes)})" if sizes else ""
        return f"no space left on device to write {self.path}{detail}; {self.fix}"

    def with_fix(self, fix: str) -> DiskFull:
        """The same error with another fix (a report's ``--output`` is not ``--results``)."""
        return DiskFull(self.path, self.needed, self.free, fix)
