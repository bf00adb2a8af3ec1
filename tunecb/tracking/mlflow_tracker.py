"""The MLflow tracker: a search as a parent run, each trial a child run (see :mod:`._base`).

``mlflow`` is imported here only, when a search or ``tunecb sync`` names a tracking URI
(``import mlflow`` takes about 2 s). A worker's tracker lives in a thread of its own
(:mod:`.shipper`), which sends epoch metrics in batches; a trial's end is a few requests.
A tracker that fails mid-search is left alone for :data:`PAUSE` seconds, so that a server
that went away costs each trial at most one timeout; the search never waits on it for long
and never fails because of it.

Example::

    tracker = MlflowTracker.open("http://127.0.0.1:5000", "digits")
    parent = tracker.start_search("digits", None)
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from tunecb.errors import ConfigError
from tunecb.storage.urls import redact, redact_text
from tunecb.tracking._base import TAG_RECORDED, TAG_STUDY, TAG_TRIAL, TrackingError, TrialRecord

log = logging.getLogger("tunecb")

PAUSE = 30.0  # seconds without a request after one failed
# MLflow retries a failed request 7 times with backoff (minutes); a tracker must not hold
# a search up that long. Set only when the user has not set them.
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
}
_FINISHED_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}
_BATCH = 1000  # MLflow's most metrics in one log_batch


def _client(uri: str) -> Any:
    for key, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)  # spawned workers inherit them
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ConfigError(
            "--mlflow needs the mlflow package: pip install 'tunecb[mlflow]'"
        ) from None
    return MlflowClient(tracking_uri=uri)


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


class MlflowTracker:
    """One MLflow client of one process; see :class:`tunecb.tracking._base.Tracker`."""

    def __init__(self, uri: str, experiment: str) -> None:
        self.uri, self.experiment = uri, experiment
        self.shown = redact(uri)
        self.client = _client(uri)
        self._experiment_id: str | None = None
        self._down_until = 0.0

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
            found = self.client.get_experiment_by_name(self.experiment)
            if found is None:
                self._experiment_id = self.client.create_experiment(self.experiment)
            else:
                self._experiment_id = found.experiment_id
                if found.lifecycle_stage == "deleted":
                    self.client.restore_experiment(found.experiment_id)
        return self._experiment_id

    def available(self) -> bool:
        """False for :data:`PAUSE` seconds after a request failed."""
        return time.monotonic() >= self._down_until

    def failed(self) -> None:
        self._down_until = time.monotonic() + PAUSE

    def start_search(self, name: str, previous: dict[str, Any] | None) -> str:
        if previous and previous.get("experiment") == self.experiment:
            run = self._existing(previous.get("run_id"))
            if run is not None:
                self.client.update_run(run.info.run_id, status="RUNNING")
                return run.info.run_id
        run = self.client.create_run(
            self.experiment_id(), run_name=name, tags={TAG_STUDY: name}
        )  # fmt: skip
        return run.info.run_id

    def start_trial(self, parent: str, number: int, run_id: str | None) -> str:
        if run_id and self._existing(run_id) is not None:
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        if self._experiment_id is None:
            self._experiment_id = self.client.get_run(parent).info.experiment_id
        tags = {"mlflow.parentRunId": parent, TAG_TRIAL: str(number)}
        run = self.client.create_run(self._experiment_id, run_name=f"trial {number}", tags=tags)
        return run.info.run_id

    def _existing(self, run_id: str | None) -> Any:
        if not run_id:
            return None
        try:
            run = self.client.get_run(run_id)
        except Exception as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower():
                return None
            raise
        return None if run.info.lifecycle_stage == "deleted" else run

    def log_epochs(self, run_id: str, rows: list[dict[str, Any]]) -> None:
        """Epoch rows (``{"epoch": n, metric: value, ...}``, step = epoch) in batches."""
        metrics = _metrics(rows)
        for start in range(0, len(metrics), _BATCH):
            self.client.log_batch(run_id, metrics=metrics[start : start + _BATCH])

    def logged_epochs(self, run_id: str, key: str = "loss") -> int:
        """The last epoch the run holds of metric ``key`` (0: none)."""
        history = self.client.get_metric_history(run_id, key)
        return max((m.step for m in history), default=0)

    def finish_trial(self, run_id: str, record: TrialRecord, logged: int) -> None:
        from mlflow.entities import Param, RunTag

        rows = [row for row in record.history if int(row.get("epoch") or 0) > logged]
        metrics = _metrics(rows)
        if record.value is not None and math.isfinite(record.value):
            metrics += _metrics([{"epoch": record.best_epoch or 0, "best_value": record.value}])
        params = [Param(k, str(v)[:6000]) for k, v in record.params.items()]
        tags = [RunTag(k, v) for k, v in record.tags().items()]
        self.client.log_batch(run_id, metrics=metrics[:_BATCH], params=params, tags=tags)
        for start in range(_BATCH, len(metrics), _BATCH):
            self.client.log_batch(run_id, metrics=metrics[start : start + _BATCH])
        if record.checkpoint is not None and record.checkpoint.exists():
            self.client.log_artifact(run_id, str(record.checkpoint), "checkpoint")
        self.client.set_tag(run_id, TAG_RECORDED, "true")
        self.client.update_run(run_id, status=_FINISHED_STATUS.get(record.state, "FINISHED"))

    def end_search(self, parent: str, best: dict[str, Any] | None, report: Path | None) -> None:
        from mlflow.entities import Metric, RunTag

        if best is not None:
            tags = [RunTag("tunecb.best_trial", str(best["number"]))]
            tags += [RunTag(f"tunecb.best.{k}", str(v)) for k, v in best["params"].items()]
            metrics = []
            if best.get("value") is not None and math.isfinite(best["value"]):
                metrics = [Metric("best_value", float(best["value"]), _now(), 0)]
            self.client.log_batch(parent, metrics=metrics, tags=tags)
        if report is not None and report.exists():
            self.client.log_artifact(parent, str(report))
        self.client.update_run(parent, status="FINISHED")

    def abort(self, parent: str, status: str) -> None:
        """End the parent run and its running children ``KILLED`` (Ctrl-C) or ``FAILED``
        (the search failed); a resumed trial reopens its run."""
        query = f"tags.mlflow.parentRunId = '{parent}' and attributes.status = 'RUNNING'"
        for run in self.client.search_runs([self.experiment_id()], query, max_results=1000):
            self.client.update_run(run.info.run_id, status=status)
        self.client.update_run(parent, status=status)

    def strays(self, parent: str, number: int) -> list[str]:
        """The runs of trial ``number`` under ``parent`` that were never completed: one
        whose creation's answer was lost with the connection (so its id is not on the
        trial) is one of them."""
        query = f"tags.mlflow.parentRunId = '{parent}' and tags.`{TAG_TRIAL}` = '{number}'"
        found = self.client.search_runs([self.experiment_id()], query, max_results=100)
        return [run.info.run_id for run in found if TAG_RECORDED not in run.data.tags]

    def discard(self, run_id: str) -> None:
        """Delete a stray run (MLflow keeps it restorable)."""
        self.client.delete_run(run_id)

    def recorded(self, parent: str) -> set[int]:
        numbers: set[int] = set()
        token = None
        query = f"tags.mlflow.parentRunId = '{parent}' and tags.`{TAG_RECORDED}` = 'true'"
        while True:
            page = self.client.search_runs(
                [self.experiment_id()], filter_string=query, max_results=1000, page_token=token
            )  # fmt: skip
            numbers.update(int(run.data.tags[TAG_TRIAL]) for run in page)
            token = page.token
            if not token:
                return numbers


def _now() -> int:
    return int(time.time() * 1000)


def _metrics(rows: list[dict[str, Any]]) -> list[Any]:
    """MLflow metrics of history rows (step = the row's epoch); empty and non-finite
    values are left out."""
    from mlflow.entities import Metric

    now, out = _now(), []
    for row in rows:
        step = int(row.get("epoch") or 0)
        for key, value in row.items():
            if key == "epoch" or not isinstance(value, int | float):
                continue
            if math.isfinite(value):
                out.append(Metric(key, float(value), now, step))
    return out
