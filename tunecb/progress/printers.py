"""How a search shows its progress: plain lines, a live view on a terminal, ``--quiet``,
or JSON records. Each printer writes through the ``write`` its front end gives it (the
CLI's and ``tunecb.search()``'s print to stdout); the live view draws on ``stream``.

>>> printer = make_printer("text", quiet=False, verbose=1, write=print, stream=None)
>>> type(printer).__name__, printer.write is print
('SearchPrinter', True)
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

Write = Callable[[str], None]


class SearchPrinter:
    """Turns search events into terminal lines (the plain mode: a log, CI, a pipe), each
    given to ``write``."""

    def __init__(self, write: Write) -> None:
        self.write = write

    def __call__(self, event: object) -> None:
        from tunecb.execution.events import SearchStarted, TrialFinished

        if isinstance(event, SearchStarted):
            self.start(event)
        elif isinstance(event, TrialFinished):
            self.trial(event)

    def start(self, e: Any) -> None:
        self.monitor, self.epochs = e.monitor, e.epochs
        budget = _plural(e.n_trials, "trial") if e.n_trials else "no trial limit"
        if e.created:
            self._write(
                f"created study {e.name!r} ({e.monitor}, {e.direction}) in {e.storage}; "
                f"budget {budget}"
            )
        else:
            best = (
                f", best {e.monitor} {_fmt(e.best_value)} (trial {e.best_number})"
                if e.best_number is not None
                else ""
            )
            self._write(
                f"continuing study {e.name!r}: {_plural(e.done, 'trial')} done{best}; "
                f"budget {budget}"
            )
            if e.n_trials is not None and e.done >= e.n_trials:
                self._write(f"nothing to run: raise --n-trials above {e.done} to run more trials")
        for note in e.notes:
            self._write(f"note: {note}")

    def trial(self, e: Any) -> None:
        o = e.outcome
        best = f"best {_fmt(e.best_value)} (#{e.best_number})" if e.best_number is not None else ""
        total = f"/{e.n_trials}" if e.n_trials else ""
        line = (
            f"[{e.done}{total}] trial {o.number:>3}  {o.state:<8}  {self.monitor} "
            f"{_fmt(o.value):>8}  {best:<18}  epochs {o.epochs_run:>3}/{self.epochs} "
            f"{o.stop_reason:<13} {o.duration_s:7.1f}s"
        )
        if o.error:
            from tunecb.errors import first_line

            line += f"  {first_line(o.error, 160)}"
        self._write(line)

    def summary(self, s: Any) -> None:
        ran = ", ".join(f"{n} {k.lower()}" for k, n in sorted(s.ran.items())) or "none"
        stop = " (timeout reached)" if s.stopped_by == "timeout" else ""
        out = self.write
        out(
            f"\nsearch done in {_duration(s.elapsed_s)}{stop}: "
            f"this run {ran}; study {_plural(s.done, 'trial')}"
        )
        if s.best:
            b = s.best
            out(
                f"best: trial {b['number']}, {s.monitor} {_fmt(b['value'])} at epoch "
                f"{b['best_epoch']}, params {params_text(b['params'])}"
            )
            if b["checkpoint"]:
                out(f"best model: {b['checkpoint']}")
        out(_checkpoints_line(s))
        out(f"report: tunecb report {s.study_dir}")

    def _write(self, text: str) -> None:
        self.write(text)

    def close(self) -> None:
        """Called when the search ends, normally or not (before the summary or error)."""


def make_printer(
    log_format: str, quiet: bool, verbose: Any, write: Write, stream: TextIO | None
) -> SearchPrinter:
    """JSON records, the quiet mode, the live view when ``stream`` is a terminal, or plain
    lines; lines go to ``write``."""
    if log_format == "json":
        return _JsonPrinter(write, quiet)
    if quiet:
        return _QuietPrinter(write)
    # Keras' own output (--verbose 1/2) would fight the live view for the terminal.
    if verbose == 0 and _terminal(stream) and os.environ.get("TERM") != "dumb":
        return _LivePrinter(write, stream)
    return SearchPrinter(write)


def _terminal(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (ValueError, AttributeError):  # closed, or not a file
        return False


class _QuietPrinter(SearchPrinter):
    """``--quiet``: nothing until the summary (errors still go to stderr)."""

    def __call__(self, event: object) -> None:
        pass


class _JsonPrinter(SearchPrinter):
    """``--log-format json``: one JSON object per event and line, flushed (``--quiet``:
    the summary's only)."""

    def __init__(self, write: Write, quiet: bool = False) -> None:
        super().__init__(write)
        self.quiet = quiet

    def __call__(self, event: object) -> None:
        if not self.quiet:
            self._record(event)

    def summary(self, s: Any) -> None:
        self._record(s)

    def _record(self, event: object) -> None:
        import json

        from tunecb.execution.events import record

        self.write(json.dumps(record(event), allow_nan=False))


class _LivePrinter(SearchPrinter):
    """On a terminal: the plain lines scroll above a live view of the search (``rich``)."""

    def __init__(self, write: Write, stream: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        from tunecb.progress.live import LiveState

        super().__init__(write)
        self.state = LiveState()
        self.console = Console(file=stream)
        # Other writes to stderr go above the view, unless stderr goes elsewhere.
        same = _same_file(stream, sys.stderr)
        self.live = Live(
            console=self.console, get_renderable=self.state.render, transient=True,
            redirect_stderr=same,
        )  # fmt: skip
        self._handlers: list[tuple[logging.StreamHandler, Any]] = []

    def __call__(self, event: object) -> None:
        from tunecb.execution.events import SearchStarted

        self.state.update(event)
        super().__call__(event)
        if isinstance(event, SearchStarted) and (
            event.n_trials is None or event.done < event.n_trials
        ):
            stderr = sys.stderr
            self.live.start()
            for handler in logging.getLogger("tunecb").handlers:  # log lines above the view
                if isinstance(handler, logging.StreamHandler) and handler.stream is stderr:
                    handler.setStream(sys.stderr)  # rich's proxy, when it redirects stderr
                    self._handlers.append((handler, stderr))

    def _write(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        self.live.stop()  # the terminal gets its cursor back, also on Ctrl-C or an error
        for handler, stream in self._handlers:
            handler.setStream(stream)


def _same_file(a: Any, b: Any) -> bool:
    try:
        return os.path.samestat(os.fstat(a.fileno()), os.fstat(b.fileno()))
    except (OSError, ValueError, AttributeError):
        return False


def _checkpoints_line(s: Any) -> str:
    """Disk use of the checkpoints, and what ``--keep-checkpoints`` did."""
    from tunecb.wording import size_text

    size = size_text(s.checkpoint_bytes)
    if s.keep_checkpoints is None:
        return (
            f"checkpoints: {_plural(s.checkpoints, 'file')}, {size} "
            "(keeping all; --keep-checkpoints K keeps the K best)"
        )
    return (
        f"checkpoints: {s.checkpoints} kept (--keep-checkpoints {s.keep_checkpoints}), "
        f"{s.checkpoints_removed} removed this run, {size}"
    )


def params_text(params: dict[str, Any]) -> str:
    """Hyperparameters as ``name=value``, floats at 3 significant digits (the report has
    them in full).

    >>> params_text({"lr": 0.014319802143828032, "units": 15, "act": "relu"})
    'lr=0.0143, units=15, act=relu'
    """
    from tunecb.escaping import printable
    from tunecb.wording import number

    return printable(
        ", ".join(f"{k}={number(v, 3) if isinstance(v, float) else v}" for k, v in params.items())
        or "none"
    )


def _plural(n: int, word: str) -> str:
    from tunecb.wording import plural

    return plural(n, word)


def _fmt(value: float | None) -> str:
    from tunecb.wording import short

    return short(value)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"
