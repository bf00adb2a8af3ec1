"""The subcommands ``search``, ``report`` and ``repair``: arguments, errors, exit codes.
How a search shows its progress lives in :mod:`tunecb.cli.printers`.

>>> main(["report", "results/digits", "--top", "5"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tunecb.cli.parser import build_parser
from tunecb.cli.printers import err as _err
from tunecb.cli.printers import make_printer
from tunecb.cli.printers import out as _out
from tunecb.cli.streams import fit_encoding, gone, out_utf8, pipe_safe
from tunecb.errors import DiskFull, TunecbError
from tunecb.tf_notices import tensorflow_filtered

EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code.

    Output closed early (``tunecb report ... | head -1``) ends the printing, quietly: a
    report exits 0 (its reader has what it asked for; 141, a death by SIGPIPE, would fail a
    ``set -o pipefail`` script for nothing), a search runs on to its end and exits as it
    would have. A terminal that cannot encode a character gets a stand-in.
    """
    fit_encoding(sys.stdout, sys.stderr)
    with pipe_safe():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    debug = bool(getattr(args, "debug", False)) or "--debug" in argv
    _setup_logging(debug)
    if args.command is None:
        parser.print_help()
        return 2
    # TensorFlow's oneDNN notices, whatever imports it here (a study file at its top)
    with tensorflow_filtered(show=debug):
        return _run(args, debug)


def _run(args: argparse.Namespace, debug: bool) -> int:
    """Run the parsed command: its exit code, an error said in one line."""
    try:
        if args.command == "search":
            return _search(args)
        if args.command == "repair":
            return _repair(args)
        if args.command == "sync":
            from tunecb.cli import syncing

            return syncing.run(args)
        if args.command in ("retrain", "rerun", "evaluate"):
            from tunecb.cli import replaying

            try:
                return replaying.run(args)
            except DiskFull as exc:  # not the search's advice: no --results, no trials
                raise exc.with_fix("free some space, then run the same command again") from exc
        return _report(args)
    except TunecbError as exc:
        if debug:
            _print_traceback(args)
        _err(f"tunecb {args.command}: error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt as exc:
        how = f"terminated by {exc.signal.name}" if isinstance(exc, Terminated) else "interrupted"
        _err(
            f"\ntunecb: {how}; finished trials and checkpoints are kept. "
            "Run the same command again to continue the study."
        )
        return 128 + exc.signal if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    except BrokenPipeError as exc:  # a write past pipe_safe(): its reader is gone, as above
        gone(sys.stdout)
        if args.command != "search":
            return 0
        _err(f"tunecb search: internal error: {type(exc).__name__}: {exc} (its trials stopped)")
        return 1  # not 0: the search did not run to its end
    except Exception as exc:  # a bug of ours or of a library: say so, in one line
        if debug:
            _print_traceback(args)
        _err(
            f"tunecb {args.command}: internal error: {type(exc).__name__}: {exc} "
            "(run with --debug for the traceback)"
        )
        return 1


def _print_traceback(args: argparse.Namespace) -> None:
    """The traceback of the error being handled (--debug), the storage's password hidden."""
    from tunecb.storage.urls import hide_password

    sys.stderr.write(hide_password(traceback.format_exc(), getattr(args, "storage", None)))


class Terminated(KeyboardInterrupt):
    """SIGTERM (a job scheduler, ``kill``) or SIGHUP (the terminal closed) during a search:
    it stops as on Ctrl-C (workers stopped, running trials marked interrupted and queued
    again), and exits with 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signal = signal.Signals(signum)


@contextlib.contextmanager
def _terminate_like_ctrl_c() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`Terminated` while the block runs (not when
    they are ignored, e.g. under ``nohup``)."""

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _search(args: argparse.Namespace) -> int:
    with _terminate_like_ctrl_c():
        return _run_search(args)


def _run_search(args: argparse.Namespace) -> int:
    # No backend is imported here: the study file is read with Keras loaded lazily, so a
    # --jobs launcher or a study with nothing left to run never pays TensorFlow's start-up.
    from tunecb.execution.choice import WorkerOptions
    from tunecb.launcher import launch
    from tunecb.study.fields import overrides_from
    from tunecb.training.backends import load_study

    overrides = overrides_from(args)
    warm = None
    if overrides.get("wandb"):  # W&B's tracker process imports wandb meanwhile
        from tunecb.tracking import remote

        warm = remote.prewarm()
    try:
        loaded = load_study(args.study_file, overrides.get("backend"))  # --backend first
        launch(
            loaded, overrides, WorkerOptions.of(args),
            lambda settings: make_printer(args.log_format, args.quiet, settings.verbose),
        )  # fmt: skip
    finally:
        if warm is not None:
            remote.idle(warm)  # never used (the search failed before it): stopped
    return 0


def _report(args: argparse.Namespace) -> int:
    try:
        return _run_report(args)
    except BrokenPipeError:  # `tunecb report ... | head`: the reader has what it wanted
        gone(sys.stdout)  # no second error when Python flushes at exit
        return 0


def _run_report(args: argparse.Namespace) -> int:
    from tunecb.reporting.data.records import study_records
    from tunecb.reporting.formats import FORMATS, trial_formats

    fmt = FORMATS[args.format]
    if args.path is None and args.storage is None:
        raise TunecbError("give a results folder (e.g. results/digits) or --storage URL")
    if fmt.page and not args.output and sys.stdout.isatty():
        raise TunecbError(
            f"--format {fmt.name} writes a whole page with embedded images: "
            f"add --output report.{fmt.name}"
        )
    if args.trial is not None and fmt.trial is None:
        raise TunecbError(
            f"--trial shows one trial as {trial_formats()}, not --format {fmt.name}; "
            "drop --trial to report the whole study"
        )
    if args.trial is not None and args.top:
        raise TunecbError("--trial N shows one trial, --top K the K best: pick one")
    result = study_records(args.path, storage=args.storage, study_name=args.study_name)
    # A file or --wide gets every column; a terminal (or a pipe: 80) gets what fits.
    width = None if args.wide or args.output else terminal_width()
    if args.trial is not None:
        return _report_trial(args, result, width)
    plots = _write_plots(result, Path(args.plots)) if args.plots else None
    text = fmt.study(result, top=args.top, width=width, plots=plots)
    if args.output:
        from tunecb.wording import plural

        shown = len(result.records[: args.top] if args.top else result.records)
        target = _write_output(args.output, text)
        _err(f"wrote {plural(shown, 'trial')} of study {result.name!r} to {target}")
        return 0
    if fmt.header:
        from tunecb.reporting.text.header import report_header

        _out("\n".join(report_header(result, width)))
    (out_utf8 if fmt.utf8 else _out)(text)
    return 0


def terminal_width() -> int:
    """The terminal's columns (``$COLUMNS`` first), 80 when stdout is not a terminal."""
    import shutil

    return max(shutil.get_terminal_size((80, 24)).columns, 40)


def _report_trial(args: argparse.Namespace, result: Any, width: int | None) -> int:
    """``report --trial N``: one trial in detail (json: all of it; csv: its epochs)."""
    from tunecb.reporting.formats import FORMATS
    from tunecb.reporting.text.trial import find_trial

    fmt = FORMATS[args.format]
    find_trial(result, args.trial, name="--trial")
    if args.plots:
        _write_trial_plot(result, args.trial, Path(args.plots))
    assert fmt.trial is not None  # _run_report refused the others
    text = fmt.trial(result, args.trial, width)
    if args.output:
        target = _write_output(args.output, text)
        _err(f"wrote trial {args.trial} of study {result.name!r} to {target}")
        return 0
    (out_utf8 if fmt.utf8 else _out)(text)
    return 0


def _write_output(output: str, text: str) -> Path:
    """``--output FILE``: ``text`` written atomically, or a one-line error."""
    target = Path(output)
    _write_file(
        target,
        lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"),
        f"--output {output!r}",
        "another --output path",
        "a writable file path",
    )
    return target


def _write_file(path: Path, write: Any, flag: str, elsewhere: str, writable: str) -> None:
    """Write ``path`` atomically (``write(tmp)``); a full disk or an unwritable place is one
    line naming ``flag`` and the fix."""
    from tunecb.results import atomic_write

    try:
        atomic_write(path, write)
    except DiskFull as exc:
        raise exc.with_fix(f"free some space, or pass {elsewhere}") from exc
    except OSError as exc:
        raise TunecbError(f"{flag}: cannot write ({exc.strerror or exc}); pass {writable}") from exc


def _write_trial_plot(result: Any, number: int, folder: Path) -> None:
    """``--plots DIR --trial N``: the trial's learning curves as ``DIR/trial_N.png``."""
    from tunecb.reporting.plots.curves import trial_png
    from tunecb.reporting.plots.shared import PlotSkipped

    if folder.exists() and not folder.is_dir():
        raise TunecbError(f"--plots {str(folder)!r} is a file; pass a folder for the PNG files")
    try:
        png = trial_png(result, number)
    except PlotSkipped as exc:
        _err(f"left out the learning curves of trial {number}: {exc}")
        return
    target = folder / f"trial_{number}.png"
    _write_png(folder, target.name, png)
    _err(f"wrote the learning curves of trial {number} to {target}")


def _write_png(folder: Path, name: str, png: bytes) -> None:
    """Write one ``--plots`` PNG atomically; a full disk or an unwritable folder is one line."""
    _write_file(
        folder / name,
        lambda tmp: tmp.write_bytes(png),
        f"--plots {str(folder)!r}",
        "another --plots folder",
        "a writable folder",
    )


def _write_plots(result: Any, folder: Path) -> list:
    """``--plots DIR``: each plot as ``DIR/<name>.png``; says which were left out, and why."""
    from tunecb.reporting.plots.study import render_plots

    if folder.exists() and not folder.is_dir():
        raise TunecbError(f"--plots {str(folder)!r} is a file; pass a folder for the PNG files")
    plots = render_plots(result)
    written = []
    for plot in plots:
        if plot.png is not None:
            _write_png(folder, f"{plot.name}.png", plot.png)
            written.append(plot.name)
    from tunecb.wording import plural

    _err(f"wrote {plural(len(written), 'plot')} to {folder}: {', '.join(written) or 'none'}")
    for plot in plots:
        if plot.png is None:
            _err(f"left out {plot.name}: {plot.skipped}")
    return plots


def _repair(args: argparse.Namespace) -> int:
    from tunecb.storage.journal import repair_journal
    from tunecb.storage.urls import JOURNAL_NAME, redact

    if (args.path is None) == (args.storage is None):
        raise TunecbError("give a results folder (e.g. results/digits) or --storage JOURNAL")
    if getattr(args, "release_running", False):
        from tunecb.oracle.release import release_running_trials

        for line in release_running_trials(args.path, args.storage):
            _out(line)
        return 0
    if args.storage and "://" in args.storage:
        raise TunecbError(
            f"--storage {redact(args.storage)!r}: repair works on journal files; a database "
            "storage has no torn records to cut"
        )
    path = Path(args.storage.removeprefix("journal:")) if args.storage else None
    if path is None:
        path = Path(args.path) / JOURNAL_NAME
    _out(repair_journal(path).summary)
    return 0


def _setup_logging(debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("tunecb: %(levelname)s: %(message)s"))
    logger = logging.getLogger("tunecb")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)
    logger.propagate = False
    import optuna  # every command uses it; 0.2 s

    optuna.logging.set_verbosity(optuna.logging.DEBUG if debug else optuna.logging.WARNING)
    if not debug:  # a lost database connection: our one-line StorageError says it better
        logging.getLogger("optuna.storages._rdb.storage").setLevel(logging.ERROR)
