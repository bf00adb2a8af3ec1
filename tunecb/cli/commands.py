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
from typing import Any, NoReturn

from tunecb import __version__
from tunecb.cli.printers import err as _err
from tunecb.cli.printers import make_printer
from tunecb.cli.printers import out as _out
from tunecb.errors import TunecbError

EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (exit 2) like every other tunecb error."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def _checked(convert: Any, ok: Any, expected: str) -> Any:
    """An argparse ``type`` that converts, checks, and names what it expected."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_positive_int = _checked(int, lambda v: v > 0, "a positive integer")
_non_negative_int = _checked(int, lambda v: v >= 0, "an integer >= 0")
_non_negative_float = _checked(float, lambda v: 0 <= v < float("inf"), "a number >= 0")
_positive_float = _checked(float, lambda v: 0 < v < float("inf"), "a positive number of seconds")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser = _Parser(
        prog="tunecb",
        description="Hyperparameter search for Keras models: Optuna studies of Keras fits "
        "with pruning, early stopping, best checkpoints and a ranked report.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"tunecb {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="{search,report,repair}", parser_class=_Parser
    )

    search = sub.add_parser(
        "search",
        parents=[common],
        help="run (or continue) the search a study file declares",
        description="Run the Optuna study a study file declares; flags override the file. "
        "Running it again continues the study up to --n-trials trials.",
    )
    search.add_argument("study_file", metavar="STUDY.py", help="the study file")
    search.add_argument("--n-trials", type=_positive_int, help="trials the study should hold")
    search.add_argument("--timeout", type=_positive_float, help="seconds; no trial starts after")
    search.add_argument("--epochs", type=_positive_int, help="epoch budget of every trial")
    search.add_argument("--batch-size", type=_positive_int, help="fit batch size")
    search.add_argument("--study-name", help="study name (default: the file's stem)")
    search.add_argument("--storage", metavar="URL", help="any Optuna storage URL or .journal path")
    search.add_argument("--results", metavar="DIR", help="results folder (default: results)")
    search.add_argument("--seed", type=_non_negative_int, help="seed of the sampler and trials")
    search.add_argument("--sampler", help="tpe, random, cmaes, qmc, gp, nsgaii or bruteforce")
    search.add_argument("--pruner", help="median, successive_halving, hyperband or none")
    search.add_argument("--monitor", help="metric to optimise, e.g. val_accuracy")
    search.add_argument("--direction", help="maximize, minimize or auto")
    search.add_argument("--verbose", type=int, choices=(0, 1, 2), help="Keras fit verbosity")
    search.add_argument(
        "--backup-every", type=_non_negative_float, metavar="S",
        help="back a running trial up at most every S seconds (default 10; 0: every epoch)",
    )  # fmt: skip
    search.add_argument(
        "--heartbeat", type=_non_negative_int, metavar="S",
        help="with a database storage: beat every S seconds so that other machines rerun the "
        "trials of one that died (default 30; 0: off)",
    )  # fmt: skip
    search.add_argument(
        "--tensorboard", action="store_const", const=True, default=None,
        help="write each trial's TensorBoard logs with HParams under RESULTS/STUDY/tensorboard",
    )  # fmt: skip
    search.add_argument(
        "--keep-checkpoints", type=_positive_int, metavar="K",
        help="keep the best checkpoints of the K best trials only; delete the others as the "
        "search runs (default: keep all)",
    )  # fmt: skip
    search.add_argument(
        "--quiet", "-q", action="store_true", help="print only errors and the final summary"
    )
    search.add_argument(
        "--log-format", choices=("text", "json"), default="text",
        help="text (default): a live progress bar on a terminal, one line per finished "
        "trial otherwise; json: one JSON object per event on stdout, for scripts",
    )  # fmt: skip
    workers = search.add_argument_group("parallel workers")
    workers.add_argument(
        "--jobs", type=_positive_int, metavar="N",
        help="run N worker processes on this machine (default: trials run in this process)",
    )  # fmt: skip
    workers.add_argument("--gpus", metavar="0,1,...", help="give worker i GPU i (round robin)")
    workers.add_argument(
        "--dask", metavar="tcp://HOST:PORT",
        help="run the --jobs workers on this Dask cluster (the storage must reach it)",
    )  # fmt: skip
    workers.add_argument(
        "--threads-per-worker", type=_positive_int, metavar="K",
        help="CPU threads of each worker (default: the cores divided by --jobs)",
    )  # fmt: skip
    workers.add_argument(
        "--worker-trials", type=_non_negative_int, default=50, metavar="N",
        help="replace a worker after N trials (0: never; default 50)",
    )  # fmt: skip
    workers.add_argument(
        "--worker-memory", type=_non_negative_int, default=4096, metavar="MIB",
        help="replace a worker above this resident memory (0: never; default 4096)",
    )  # fmt: skip

    report = sub.add_parser(
        "report",
        parents=[common],
        help="show a study's trials ranked by the objective",
        description="Rank the trials of a study. Works on a results folder, or on any "
        "Optuna study with --storage URL --study-name NAME.",
    )
    report.add_argument("path", nargs="?", metavar="RESULTS_DIR", help="e.g. results/digits")
    report.add_argument("--storage", metavar="URL", help="Optuna storage URL")
    report.add_argument("--study-name", help="study in the storage")
    report.add_argument("--top", type=_positive_int, metavar="K", help="only the K best trials")
    report.add_argument(
        "--format", default="table", choices=("table", "csv", "markdown", "json", "html"),
        help="output; html is one self-contained page with a summary, plots and the table",
    )  # fmt: skip
    report.add_argument("--output", metavar="FILE", help="write to FILE instead of the terminal")
    report.add_argument(
        "--plots", metavar="DIR",
        help="also write the plots (history, learning curves, importance...) as PNG files to DIR",
    )  # fmt: skip

    repair = sub.add_parser(
        "repair",
        parents=[common],
        help="cut a half-written record off a study's journal file",
        description="A process killed while writing can leave the last record of the journal "
        "storage half-written. This keeps every complete record (a backup of the file is "
        "written first) so that the study can be used again.",
    )
    repair.add_argument("path", nargs="?", metavar="RESULTS_DIR", help="e.g. results/digits")
    repair.add_argument("--storage", metavar="JOURNAL", help="a journal file path instead")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
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
    try:
        if args.command == "search":
            return _search(args)
        if args.command == "repair":
            return _repair(args)
        return _report(args)
    except TunecbError as exc:
        if debug:
            traceback.print_exc()
        _err(f"tunecb {args.command}: error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt as exc:
        how = f"terminated by {exc.signal.name}" if isinstance(exc, Terminated) else "interrupted"
        _err(
            f"\ntunecb: {how}; finished trials and checkpoints are kept. "
            "Run the same command again to continue the study."
        )
        return 128 + exc.signal if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    except Exception as exc:  # a bug of ours or of a library: say so, in one line
        if debug:
            traceback.print_exc()
        _err(
            f"tunecb {args.command}: internal error: {type(exc).__name__}: {exc} "
            "(run with --debug for the traceback)"
        )
        return 1


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
    if not args.debug:
        from tunecb.tfimport import import_tensorflow_quietly

        import_tensorflow_quietly()
    from tunecb.config import resolve
    from tunecb.search import run_search
    from tunecb.study import load_study_file

    loaded = load_study_file(args.study_file)
    overrides = {
        "n_trials": args.n_trials,
        "timeout": args.timeout,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "name": args.study_name,
        "storage": args.storage,
        "results": args.results,
        "seed": args.seed,
        "sampler": args.sampler,
        "pruner": args.pruner,
        "monitor": args.monitor,
        "direction": args.direction,
        "verbose": args.verbose,
        "backup_every": args.backup_every,
        "heartbeat": args.heartbeat,
        "tensorboard": args.tensorboard,
        "keep_checkpoints": args.keep_checkpoints,
    }
    settings = resolve(
        loaded.study.settings,
        overrides,
        default_name=loaded.default_name,
        study_path=loaded.path,
    )
    execution = None
    if args.jobs is not None:
        from tunecb.pool import Execution, parse_gpus

        execution = Execution(
            jobs=args.jobs,
            gpus=parse_gpus(args.gpus, args.jobs),
            threads_per_worker=args.threads_per_worker,
            worker_trials=args.worker_trials or None,
            worker_memory_mb=args.worker_memory or None,
            dask=args.dask,
        )
        if args.dask:
            from tunecb.cluster import connect

            connect(args.dask).close()  # fail in seconds, before any study is touched
    elif args.dask:
        raise TunecbError("--dask needs --jobs N: how many workers to run on the cluster")
    elif args.gpus:
        raise TunecbError("--gpus needs --jobs N: each worker process gets its GPU")
    printer = make_printer(args.log_format, args.quiet, settings.verbose)
    try:
        summary = run_search(loaded, settings, printer, execution, overrides)
    finally:
        printer.close()
    printer.summary(summary)
    return 0


def _report(args: argparse.Namespace) -> int:
    from tunecb.render import render
    from tunecb.reporting import columns, study_records

    if args.path is None and args.storage is None:
        raise TunecbError("give a results folder (e.g. results/digits) or --storage URL")
    if args.format == "html" and not args.output and sys.stdout.isatty():
        raise TunecbError(
            "--format html writes a whole page with embedded images: add --output report.html"
        )
    result = study_records(args.path, storage=args.storage, study_name=args.study_name)
    records = result.records[: args.top] if args.top else result.records
    plots = _write_plots(result, Path(args.plots)) if args.plots else None
    if args.format == "html":
        from tunecb.htmlreport import html_report

        text = html_report(result, plots, top=args.top)
    else:
        text = render(records, args.format, columns(result.records))
    if args.output:
        from tunecb.results import atomic_write_text

        target = Path(args.output)
        try:
            atomic_write_text(target, text + "\n")
        except OSError as exc:
            raise TunecbError(
                f"--output {args.output!r}: cannot write ({exc.strerror or exc}); "
                "pass a writable file path"
            ) from exc
        _err(f"wrote {len(records)} trials of study {result.name!r} to {target}")
        return 0
    if args.format == "table":
        states: dict[str, int] = {}
        for r in result.records:
            states[r["state"]] = states.get(r["state"], 0) + 1
        counts = ", ".join(f"{n} {k.lower()}" for k, n in states.items())
        metric = result.monitor or "value"
        _out(f"study {result.name!r}: {metric} ({result.direction}); {counts or 'no trials'}")
        if result.records:
            from tunecb.overview import one_line, overview

            _out(one_line(overview(result)))
    _out(text)
    return 0


def _write_plots(result: Any, folder: Path) -> list:
    """``--plots DIR``: each plot as ``DIR/<name>.png``; says which were left out, and why."""
    from tunecb.plots import render_plots
    from tunecb.results import atomic_write

    if folder.exists() and not folder.is_dir():
        raise TunecbError(f"--plots {str(folder)!r} is a file; pass a folder for the PNG files")
    plots = render_plots(result)
    written = []
    try:
        for plot in plots:
            if plot.png is not None:
                png = plot.png
                atomic_write(folder / f"{plot.name}.png", lambda tmp, b=png: tmp.write_bytes(b))
                written.append(plot.name)
    except OSError as exc:
        raise TunecbError(
            f"--plots {str(folder)!r}: cannot write ({exc.strerror or exc}); pass a writable folder"
        ) from exc
    _err(f"wrote {len(written)} plots to {folder}: {', '.join(written) or 'none'}")
    for plot in plots:
        if plot.png is None:
            _err(f"left out {plot.name}: {plot.skipped}")
    return plots


def _repair(args: argparse.Namespace) -> int:
    from tunecb.journal import repair_journal
    from tunecb.storage import JOURNAL_NAME

    if (args.path is None) == (args.storage is None):
        raise TunecbError("give a results folder (e.g. results/digits) or --storage JOURNAL")
    if args.storage and "://" in args.storage:
        raise TunecbError(
            f"--storage {args.storage!r}: repair works on journal files; a database storage "
            "has no torn records to cut"
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
