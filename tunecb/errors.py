"""Errors tunecb raises on purpose.

Two kinds, as in KerasTuner: a :class:`TunecbError` stops the whole search (bad input,
a broken study file, a storage that cannot be reached); an exception raised by the
user's code inside one trial only fails that trial.
"""

from __future__ import annotations


def first_line(text: str | None, limit: int = 300) -> str:
    r"""The first line of ``text``, cut to ``limit`` characters (for one-line messages).

    >>> first_line("ValueError: bad\n  detail")
    'ValueError: bad'
    """
    lines = (text or "").strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


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


class SearchFailed(TunecbError):
    """The search stopped because its trials keep failing."""

    exit_code = 1


class WorkerFault(TunecbError):
    """A worker process failed for a reason outside the study (it crashed, the storage it
    writes to went away): the search cannot finish; exit code 1."""

    exit_code = 1
