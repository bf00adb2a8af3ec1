"""The MLflow tracker: a search as a parent run, each trial a child run (see :mod:`._base`).

It speaks to the tracking store through one small client (:mod:`.client`): tunecb's own
REST client for an ``http(s)://`` server, which never imports ``mlflow``, and MLflow's
client for every other URI (``sqlite:``, a folder, ``databricks``), imported only then.
A worker's tracker lives in a thread of its own (:mod:`.shipper`), which sends epoch
metrics in batches; a trial's end is a few requests. A tracker that fails mid-search is
left alone for :data:`PAUSE` seconds, so that a server that went away costs each trial at
most one timeout; the search never waits on it for long and never fails because of it.

Example::

    tracker = MlflowTracker.open("http://127.0.0.1:5000", "digits")
    parent = tracker.start_search("digits", None)
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from tunecb.errors import ConfigError
from tunecb.storage.urls import redact, redact_text
from tunecb.tracking._base import (
    MLFLOW,
    TAG_RECORDED,
    TAG_STUDY,
    TAG_TRIAL,
    Pausing,
    TrackingError,
    TrialRecord,
)
from tunecb.tracking.client import Metric, TrackingClient, uses_rest

log = logging.getLogger("tunecb")

PAUSE = Pausing.PAUSE  # seconds without a request after one failed
_FINISHED_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}


def open_client(uri: str) -> TrackingClient:
    """The client of ``uri``: tunecb's REST client where it serves, else MLflow's own."""
    if uses_rest(uri):
        from tunecb.tracking.rest_client import RestClient

        return RestClient(uri)
    from tunecb.tracking.mlflow_client import MlflowClientAdapter

    return MlflowClientAdapter(uri)


def reason(exc: BaseException, uri: str) -> str:
    """The first useful line of an MLflow error, without credentials.

    >>> reason(OSError("x Connection refused y"), "http://h")
    'connection refused'
    """
    text = redact_text(str(exc)).replace(uri, redact(uri))
    for known in ("Connection refused", "timed out", "Name or service not known"):
        if known.lower() in text.lower():
            return known.lower()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    return line if len(line) <= 200 else line[:197] + "..."


class MlflowTracker(Pausing):
    """One MLflow client of one process; see :class:`tunecb.tracking._base.Tracker`."""

    kind = MLFLOW

    def __init__(self, uri: str, experiment: str, client: TrackingClient | None = None) -> None:
        self.uri, self.experiment = uri, experiment
        self.shown = redact(uri)
        self.client = client or open_client(uri)
        self._experiment_id: str | None = None

    @classmethod
    def open(cls, uri: str, experiment: str) -> MlflowTracker:
        """A tracker on ``uri`` whose experiment exists (created if need be); raises
        :class:`TrackingError` in a few seconds when the tracker cannot be reached."""
        tracker = cls(uri, experiment)
        try:
            tracker.experiment_id()
        except ConfigError:
            raise
        except Exception as exc:
            raise TrackingError(
                f"MLflow tracking URI {tracker.shown!r} cannot be reached: "
                f"{reason(exc, uri)}; start the tracking server, or fix --mlflow "
                "(the search did not start)"
            ) from None
        return tracker

    def experiment_id(self) -> str:
        if self._experiment_id is None:
            found = self.client.experiment(self.experiment)
            if found is None:
                self._experiment_id = self.client.create_experiment(self.experiment)
            else:
                self._experiment_id = found[0]
                if found[1] == "deleted":
                    self.client.restore_experiment(found[0])
        return self._experiment_id

    def start_search(self, name: str, previous: dict[str, Any] | None) -> str:
        if previous and previous.get("experiment") == self.experiment:
            run = self._existing(previous.get("run_id"))
            if run is not None:
                self.client.update_run(run.run_id, "RUNNING")
                return run.run_id
        return self.client.create_run(self.experiment_id(), name, {TAG_STUDY: name}).run_id

    def start_trial(self, parent: str, number: int, run_id: str | None) -> str:
        if run_id and self._existing(run_id) is not None:
            self.client.update_run(run_id, "RUNNING")
            return run_id
        if self._experiment_id is None:
            found = self.client.get_run(parent)
            self._experiment_id = found.experiment_id if found else self.experiment_id()
        tags = {"mlflow.parentRunId": parent, TAG_TRIAL: str(number)}
        return self.client.create_run(self._experiment_id, f"trial {number}", tags).run_id

    def _existing(self, run_id: str | None) -> Any:
        run = self.client.get_run(run_id) if run_id else None
        return None if run is None or run.lifecycle_stage == "deleted" else run

    def log_epochs(self, run_id: str, rows: list[dict[str, Any]]) -> None:
        """Epoch rows (``{"epoch": n, metric: value, ...}``, step = epoch) in batches."""
        self.client.log_batch(run_id, _metrics(rows), {}, {})

    def logged_epochs(self, run_id: str, key: str = "loss") -> int:
        """The last epoch the run holds of metric ``key`` (0: none)."""
        return max(self.client.metric_steps(run_id, key), default=0)

    def finish_trial(self, run_id: str, record: TrialRecord, logged: int) -> None:
        rows = [row for row in record.history if int(row.get("epoch") or 0) > logged]
        metrics = _metrics(rows)
        if record.value is not None and math.isfinite(record.value):
            metrics += _metrics([{"epoch": record.best_epoch or 0, "best_value": record.value}])
        params = {k: str(v)[:6000] for k, v in record.params.items()}
        self.client.log_batch(run_id, metrics, params, record.tags())
        if record.checkpoint is not None and record.checkpoint.exists():
            self.client.log_artifact(run_id, str(record.checkpoint), "checkpoint")
        # The run's end first, "recorded" last: a tracker gone between the two leaves the
        # run unrecorded, so `tunecb sync` completes it again (the other way round, sync
        # skipped a run left RUNNING).
        self.client.update_run(run_id, _FINISHED_STATUS.get(record.state, "FINISHED"))
        self.client.set_tag(run_id, TAG_RECORDED, "true")

    def end_search(self, parent: str, best: dict[str, Any] | None, report: Path | None) -> None:
        if best is not None:
            tags = {"tunecb.best_trial": str(best["number"])}
            tags.update({f"tunecb.best.{k}": str(v) for k, v in best["params"].items()})
            metrics = []
            if best.get("value") is not None and math.isfinite(best["value"]):
                metrics = [Metric("best_value", float(best["value"]), _now(), 0)]
            self.client.log_batch(parent, metrics, {}, tags)
        if report is not None and report.exists():
            try:  # the report is a nicety: the run still ends (its artifact store may refuse)
                self.client.log_artifact(parent, str(report), None)
            except Exception as exc:
                log.warning("MLflow %s: the HTML report not stored on run %s: %s",
                            self.shown, parent, reason(exc, self.uri))  # fmt: skip
        self.client.update_run(parent, "FINISHED")

    def abort(self, parent: str, status: str) -> None:
        """End the parent run and its running children ``KILLED`` (Ctrl-C) or ``FAILED``
        (the search failed); a resumed trial reopens its run."""
        query = f"tags.mlflow.parentRunId = '{parent}' and attributes.status = 'RUNNING'"
        for run in self._search(query):
            self.client.update_run(run.run_id, status)
        self.client.update_run(parent, status)

    def strays(self, parent: str, number: int) -> list[str]:
        """The runs of trial ``number`` under ``parent`` that were never completed: one
        whose creation's answer was lost with the connection (so its id is not on the
        trial) is one of them."""
        query = f"tags.mlflow.parentRunId = '{parent}' and tags.`{TAG_TRIAL}` = '{number}'"
        return [run.run_id for run in self._search(query) if TAG_RECORDED not in run.tags]

    def discard(self, run_id: str) -> None:
        """Delete a stray run (MLflow keeps it restorable)."""
        self.client.delete_run(run_id)

    def recorded(self, parent: str) -> set[int]:
        query = f"tags.mlflow.parentRunId = '{parent}' and tags.`{TAG_RECORDED}` = 'true'"
        return {int(run.tags[TAG_TRIAL]) for run in self._search(query)}

    def _search(self, query: str) -> list[Any]:
        """Every active run of the experiment that matches ``query`` (page by page)."""
        found, token = [], None
        while True:
            page, token = self.client.search_runs(self.experiment_id(), query, 1000, token)
            found += page
            if not token:
                return found


def _now() -> int:
    return int(time.time() * 1000)


def _metrics(rows: list[dict[str, Any]]) -> list[Metric]:
    """The metrics of history rows (step = the row's epoch); empty and non-finite values
    are left out.

    >>> [m.step for m in _metrics([{"epoch": 2, "loss": 0.5, "acc": float("nan")}])]
    [2]
    """
    now, out = _now(), []
    for row in rows:
        step = int(row.get("epoch") or 0)
        for key, value in row.items():
            if key == "epoch" or not isinstance(value, int | float):
                continue
            if math.isfinite(value):
                out.append(Metric(key, float(value), now, step))
    return out
