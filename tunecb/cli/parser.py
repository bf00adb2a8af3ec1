"""The ``tunecb`` argument parser. The ``search`` flags that set a study setting are made
from :data:`tunecb.study.fields.FIELDS`; the others are written here.

>>> build_parser().parse_args(["search", "s.py", "--epochs", "3"]).epochs
3
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from tunecb._version import __version__
from tunecb.execution.sizing import WORKER_MEMORY_MB, WORKER_TRIALS
from tunecb.reporting.formats import names as report_formats
from tunecb.study.fields import FIELDS, CliType, Field


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (exit 2) like every other tunecb error."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def _checked(convert: Callable[[str], Any], ok: Callable[[Any], bool], expected: str) -> Any:
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
_jobs = _checked(
    lambda t: "auto" if t.strip().lower() == "auto" else int(t),
    lambda v: v == "auto" or v >= 0,
    "auto or an integer >= 0",
)
_non_negative_int = _checked(int, lambda v: v >= 0, "an integer >= 0")
_non_negative_float = _checked(float, lambda v: 0 <= v < float("inf"), "a number >= 0")
_positive_float = _checked(float, lambda v: 0 < v < float("inf"), "a positive number of seconds")

# The argparse ``type`` of each Field.cli_type ("switch" is a flag without a value).
CONVERTERS: dict[CliType, Callable[[str], Any] | None] = {
    "str": None,
    "int": int,
    "positive_int": _positive_int,
    "non_negative_int": _non_negative_int,
    "positive_float": _positive_float,
    "non_negative_float": _non_negative_float,
    "switch": None,
}


def add_setting_flag(group: Any, f: Field) -> argparse.Action:
    """Add the ``tunecb search`` flag of one study setting; not given, it parses as None."""
    assert f.flag is not None
    if f.cli_type == "switch":
        return group.add_argument(
            f.flag, action="store_const", const=True, default=None, help=f.help
        )
    return group.add_argument(
        f.flag, type=CONVERTERS[f.cli_type], choices=f.choices, metavar=f.metavar, help=f.help
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``tunecb`` and its subcommands."""
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
        dest="command",
        metavar="{search,report,retrain,rerun,evaluate,repair,sync}",
        parser_class=_Parser,
    )
    _add_search(sub, common)
    _add_report(sub, common)
    from tunecb.cli.replaying import add_parsers

    add_parsers(sub, common, _positive_int)
    _add_repair(sub, common)
    from tunecb.cli import syncing

    syncing.add_parser(sub, common, add_setting_flag)
    return parser


def _add_search(sub: Any, common: argparse.ArgumentParser) -> None:
    """``tunecb search``: the study file, a flag per setting of the table, the workers."""
    search = sub.add_parser(
        "search",
        parents=[common],
        help="run (or continue) the search a study file declares",
        description="Run the Optuna study a study file declares; flags override the file. "
        "Running it again continues the study up to --n-trials trials.",
    )
    search.add_argument("study_file", metavar="STUDY.py", help="the study file")
    settings = search.add_argument_group(
        "study settings", "override the study file's settings, which override the defaults"
    )
    for f in FIELDS:
        if f.flag:
            add_setting_flag(settings, f)
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
        "--jobs", type=_jobs, metavar="N",
        help="trials at once: N worker processes on this machine; 0 runs them one at a time "
        "in this process; auto (default, or $TUNECB_JOBS) is one worker per core when "
        "there are 2 or more, no GPU and 2 or more trials left, else 0",
    )  # fmt: skip
    workers.add_argument("--gpus", metavar="0,1,...", help="give worker i GPU i (round robin)")
    workers.add_argument(
        "--workers-per-gpu", type=_positive_int, default=1, metavar="N",
        help="N workers share each of --gpus, each allocating GPU memory on demand (default 1)",
    )  # fmt: skip
    workers.add_argument(
        "--dask", metavar="tcp://HOST:PORT",
        help="run the --jobs workers on this Dask cluster (the storage must reach it)",
    )  # fmt: skip
    workers.add_argument(
        "--threads-per-worker", type=_positive_int, metavar="K",
        help="CPU threads of each worker (default: the cores divided by --jobs)",
    )  # fmt: skip
    workers.add_argument(
        "--worker-trials", type=_non_negative_int, default=WORKER_TRIALS, metavar="N",
        help=f"replace a worker after N trials (0: never; default {WORKER_TRIALS})",
    )  # fmt: skip
    workers.add_argument(
        "--worker-memory", type=_non_negative_int, default=int(WORKER_MEMORY_MB),
        metavar="MIB", help="replace a worker above this resident memory, and stop a trial "
        f"that grows it past it (0: never; default {WORKER_MEMORY_MB:g})",
    )  # fmt: skip


def _add_report(sub: Any, common: argparse.ArgumentParser) -> None:
    """``tunecb report``: a results folder or a storage, and how to show it."""
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
        "--format", default="table", choices=report_formats(),
        help="output; html is one self-contained page with a summary, plots and the table",
    )  # fmt: skip
    report.add_argument("--output", metavar="FILE", help="write to FILE instead of the terminal")
    report.add_argument(
        "--plots", metavar="DIR",
        help="also write the plots (history, learning curves, importance...) as PNG files to "
        "DIR; with --trial N, that trial's learning curves",
    )  # fmt: skip
    report.add_argument(
        "--trial", type=_non_negative_int, metavar="N",
        help="one trial in detail: value, parameters, stop reason, the whole error, the "
        "checkpoint and its epochs (--format json: all of it; csv: the epochs)",
    )  # fmt: skip
    report.add_argument(
        "--wide", action="store_true",
        help="the table with every column in full (by default it fits the terminal, 80 "
        "columns when not on one; --format csv/json are always complete)",
    )  # fmt: skip


def _add_repair(sub: Any, common: argparse.ArgumentParser) -> None:
    """``tunecb repair``: cut a torn journal record; release trials a dead run left."""
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
    repair.add_argument(
        "--release-running",
        action="store_true",
        help="fail the trials left RUNNING by a run that is dead (on another machine: "
        "nothing can check it) and queue their parameters again; only when no run of "
        "the study is alive elsewhere (with --storage: any storage URL)",
    )
