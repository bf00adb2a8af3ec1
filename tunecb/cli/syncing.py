"""``tunecb sync``: write a study's finished trials to an experiment tracker (MLflow,
W&B) from tunecb's own records (its storage, ``trial.json``, ``history.csv`` and
checkpoints): the gap a tracker that went away mid-search left, or a study searched
without ``--mlflow`` / ``--wandb``.

>>> main(["sync", "results/digits", "--mlflow", "http://127.0.0.1:5000"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tunecb.cli.printers import err
from tunecb.errors import ConfigError
from tunecb.study.fields import FIELDS_BY_NAME
from tunecb.wording import plural


def add_parser(sub: Any, common: argparse.ArgumentParser, add_setting_flag: Any) -> None:
    """Add ``sync`` to the ``tunecb`` subparsers; ``add_setting_flag``: the parser's
    (:func:`tunecb.cli.parser.add_setting_flag`), so ``--mlflow`` parses as in ``search``."""
    sync = sub.add_parser(
        "sync",
        parents=[common],
        help="write a study's finished trials to MLflow or W&B from its records",
        description="Write every finished trial of a study that the tracker does not hold "
        "yet (MLflow: a child run each under the study's parent run; W&B: a run each in the "
        "study's group; with its parameters, epochs and best checkpoint), then the study's "
        "best and HTML report. Trials it already holds are left as they are.",
    )
    sync.add_argument("path", metavar="RESULTS_DIR", help="e.g. results/digits")
    # the search's own flags (one definition, one check: tunecb.study.settings)
    for name in ("mlflow", "mlflow_experiment", "wandb"):
        add_setting_flag(sync, FIELDS_BY_NAME[name])
    sync.add_argument("--storage", metavar="URL", help="the study's storage, if not the folder's")


def run(args: argparse.Namespace) -> int:
    from tunecb.reporting.data.records import open_report_study, study_records
    from tunecb.reporting.html.page import html_report
    from tunecb.reporting.plots.study import TRACKER_LEAVES_OUT, render_plots
    from tunecb.results import StudyDir
    from tunecb.tracking.search import sync_study
    from tunecb.tracking.targets import targets

    if not (args.mlflow or args.wandb):
        raise ConfigError("tunecb sync needs a tracker: --mlflow URI or --wandb PROJECT")
    study, study_dir, _ = open_report_study(args.path, args.storage, None)
    assert study_dir is not None  # a results folder is required

    def report(path: Path) -> None:
        records = study_records(args.path, storage=args.storage, study_name=study.study_name)
        plots = render_plots(records, leave_out=TRACKER_LEAVES_OUT)
        path.write_text(html_report(records, plots), encoding="utf-8")

    for target in targets(args, study.study_name):
        written, had = sync_study(
            target.uri, target.experiment, study, StudyDir(study_dir.root), report, target.kind
        )  # fmt: skip
        err(
            f"{target.kind.label} {target.shown!r}: wrote {plural(written, 'trial')} of study "
            f"{study.study_name!r}; it already held {had}"
        )
    return 0
