"""The W&B tracker (``--wandb PROJECT``): a search as a group of runs (the group: the
study's name) in a W&B project, one run per trial (job type ``trial``: config = its
parameters, every epoch's metrics with step = epoch, summary = its state, stop reason,
best value, seed, backend and versions, its best checkpoint as a ``model`` artifact) and
one run for the search (job type ``search``: the study's best, the HTML report).

W&B's own variables choose the rest: ``WANDB_MODE`` (``offline``: the runs are written
under ``WANDB_DIR`` and uploaded later with ``wandb sync``), ``WANDB_ENTITY``,
``WANDB_API_KEY``, ``WANDB_DIR``. ``import wandb`` (about 0.6 s of CPU) and the service
process W&B starts for a process's first run (``wandb-core``, which ends with the
process) happen only here, in the tracker's own thread (:mod:`.shipper`).

W&B's runs live in the process that writes them, so a trial's run is opened with a run id
tunecb chooses and ``resume="allow"``: a resumed trial (or ``tunecb sync``) continues it.
W&B cannot be asked which runs it holds when offline: the trials note a complete run on
themselves (:data:`tunecb.tracking._base.WANDB`'s ``recorded_attr``).

Example::

    tracker = WandbTracker.open("my-project", "digits")
    search_run = tracker.start_search("digits", None)
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from tunecb.errors import ConfigError
from tunecb.tracking._base import TAG_STUDY, WANDB, Pausing, TrialRecord

log = logging.getLogger("tunecb")

# W&B's run settings: no console capture (several runs share a process and its terminal),
# no system metrics, code, git or requirements snapshot per run: a run costs ~0.2 s CPU.
_RUN_SETTINGS = dict(
    console="off", x_disable_stats=True, silent=True, save_code=False, disable_git=True,
    x_save_requirements=False,
)  # fmt: skip
INIT_TIMEOUT = 15.0  # seconds W&B may take to open a run (WANDB_INIT_TIMEOUT overrides)
_EXIT = {"FAIL": 1, "FAILED": 1, "KILLED": 255}
REPORT = "report.html"  # the search run's file holding the HTML report


def import_wandb(project: str) -> Any:
    """The ``wandb`` module, or a :class:`ConfigError` naming the extra to install."""
    try:
        import wandb
    except ImportError:
        raise ConfigError(
            f"--wandb {project} needs the wandb package: pip install 'tunecb[wandb]'"
        ) from None
    return wandb


def artifact_name(group: str, number: int) -> str:
    """The name of trial ``number``'s checkpoint artifact (W&B takes letters, digits,
    ``-``, ``_`` and ``.``).

    >>> artifact_name("digits mlp/v2", 3)
    'digits-mlp-v2-trial-3'
    """
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', group)}-trial-{number}"


def _new_id() -> str:
    """A new run id (W&B's are 8 lowercase letters and digits; tunecb's 12 hex digits)."""
    return uuid.uuid4().hex[:12]


def summary(record: TrialRecord) -> dict[str, Any]:
    """A trial run's summary: the best value, and tunecb's record under ``tunecb``.

    >>> summary(TrialRecord(number=2, state="PRUNED", value=0.5, stop_reason="pruned"))
    {'tunecb': {'trial': 2, 'state': 'PRUNED', 'stop_reason': 'pruned'}, 'best_value': 0.5}
    """
    fields: dict[str, Any] = {"trial": record.number, "state": record.state}
    for key in ("stop_reason", "seed", "best_epoch", "epochs_run", "error"):
        value = getattr(record, key)
        if value is not None:
            fields[key] = value[:4000] if isinstance(value, str) else value
    fields.update(record.versions)
    out: dict[str, Any] = {"tunecb": fields}
    if record.value is not None and math.isfinite(record.value):
        out["best_value"] = record.value
    return out


def metrics(row: dict[str, Any]) -> dict[str, float]:
    """One history row's finite metrics (its ``epoch`` is the step).

    >>> metrics({"epoch": 2, "loss": 0.5, "acc": float("nan"), "lr": "x"})
    {'loss': 0.5}
    """
    return {
        key: float(value)
        for key, value in row.items()
        if key != "epoch" and isinstance(value, int | float) and math.isfinite(value)
    }


class WandbTracker(Pausing):
    """The W&B runs of one process; see :class:`tunecb.tracking._base.Tracker`."""

    kind = WANDB

    def __init__(self, project: str, group: str) -> None:
        self.uri, self.experiment, self.shown = project, group, project
        self.wandb = import_wandb(project)
        self._runs: dict[str, Any] = {}  # run id -> its open wandb Run
        self._steps: dict[str, int] = {}  # run id -> the last epoch logged from here

    @classmethod
    def open(cls, project: str, group: str) -> WandbTracker:
        """A tracker on ``project`` (``import wandb``; the search's run checks the rest)."""
        return cls(project, group)

    def _init(self, run_id: str, name: str, job_type: str, config: dict[str, Any]) -> Any:
        settings = dict(_RUN_SETTINGS)
        if "WANDB_INIT_TIMEOUT" not in os.environ:
            settings["init_timeout"] = INIT_TIMEOUT
        run = self.wandb.init(
            project=self.uri, group=self.experiment, job_type=job_type, name=name,
            id=run_id, resume="allow", reinit="create_new", config=config,
            settings=self.wandb.Settings(**settings),
        )  # fmt: skip
        self._runs[run_id] = run
        return run

    def start_search(self, name: str, previous: dict[str, Any] | None) -> str:
        same = previous and (previous.get("uri"), previous.get("experiment")) == (
            self.uri, self.experiment,
        )  # fmt: skip
        run_id = previous["run_id"] if same else _new_id()  # type: ignore[index]
        self._init(run_id, f"search {name}", "search", {TAG_STUDY: name})
        return run_id

    def start_trial(self, parent: str, number: int, run_id: str | None) -> str:
        run_id = run_id or _new_id()
        if run_id not in self._runs:
            config = {"tunecb.trial": number, "tunecb.search_run": parent}
            self._init(run_id, f"trial {number}", "trial", config)
        return run_id

    def log_epochs(self, run_id: str, rows: list[dict[str, Any]]) -> None:
        """Each row as one step (step = epoch); an epoch logged already is left out (W&B
        keeps a run's steps increasing)."""
        run = self._runs[run_id]
        for row in sorted(rows, key=lambda r: int(r.get("epoch") or 0)):
            epoch = int(row.get("epoch") or 0)
            if epoch > self._steps.get(run_id, 0):
                run.log(metrics(row), step=epoch)
                self._steps[run_id] = epoch

    def logged_epochs(self, run_id: str) -> int:
        """The last epoch logged from this process (W&B offline cannot say more): a
        resumed run gets its earlier epochs again, which W&B drops when it syncs."""
        return self._steps.get(run_id, 0)

    def finish_trial(self, run_id: str, record: TrialRecord, logged: int) -> None:
        run = self._runs[run_id]
        self.log_epochs(run_id, [r for r in record.history if int(r.get("epoch") or 0) > logged])
        run.config.update(record.params, allow_val_change=True)
        if record.checkpoint is not None and record.checkpoint.exists():
            metadata = {"trial": record.number, "value": record.value}
            metadata["best_epoch"] = record.best_epoch
            artifact = self.wandb.Artifact(
                artifact_name(self.experiment, record.number), type="model", metadata=metadata
            )  # fmt: skip
            artifact.add_file(str(record.checkpoint))
            run.log_artifact(artifact, aliases=["best"])
        written = summary(record)
        written["tunecb"]["recorded"] = True  # last: a run without it has a gap
        run.summary.update(written)
        self._end(run_id, record.state)

    def end_search(self, parent: str, best: dict[str, Any] | None, report: Path | None) -> None:
        run = self._runs[parent]
        if best is not None:
            value = best.get("value")
            run.summary.update({
                "best_trial": best["number"], "best_params": dict(best["params"]),
                **({"best_value": value} if value is not None and math.isfinite(value) else {}),
            })  # fmt: skip
        if report is not None and report.exists():  # a file of the run: `files/report.html`
            # (not a wandb.Html panel: importing W&B's media types cost 0.33 s of CPU)
            try:  # the report is a nicety: the run still ends
                shutil.copyfile(report, Path(run.dir) / REPORT)
                run.save(str(Path(run.dir) / REPORT), base_path=run.dir, policy="now")
            except Exception as exc:
                log.warning("W&B %s: the HTML report not saved on run %s: %s", self.shown,
                            parent, exc)  # fmt: skip
        self._end(parent, "FINISHED")

    def abort(self, parent: str, status: str) -> None:
        """End the search's run (and any trial run still open here) ``status``."""
        for run_id in list(self._runs):
            self._runs[run_id].summary.update({"tunecb_status": status})
            self._end(run_id, status)

    def _end(self, run_id: str, status: str) -> None:
        run = self._runs.pop(run_id)
        self._steps.pop(run_id, None)
        run.finish(exit_code=_EXIT.get(status, 0))

    def recorded(self, parent: str) -> set[int]:
        """Not asked (W&B offline cannot say): the trials note it (``recorded_attr``)."""
        return set()

    def strays(self, parent: str, number: int) -> list[str]:
        """None: a run's id is tunecb's choice (not a server's answer that can be lost)."""
        return []

    def discard(self, run_id: str) -> None:
        """Nothing to discard (see :meth:`strays`)."""
