"""MLflow's own client behind tunecb's seam (:class:`~.client.TrackingClient`), for the
URIs the REST client does not serve: ``sqlite:``, ``databricks``, a folder, and servers
behind MLflow's auth plugins. ``import mlflow`` (about 2 s of CPU) happens here only.

Example::

    client = MlflowClientAdapter("sqlite:///mlflow.db")
    experiment = client.experiment("digits")  # None: no such experiment
"""

from __future__ import annotations

import os
from typing import Any

from tunecb.errors import ConfigError
from tunecb.storage.urls import redact
from tunecb.tracking.client import Metric, Run

# MLflow retries a failed request 7 times with backoff (minutes); a tracker must not hold
# a search up that long. Set only when the user has not set them.
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
}
_FINAL = {"FINISHED", "FAILED", "KILLED"}


def mlflow_client(uri: str) -> Any:
    """MLflow's ``MlflowClient`` on ``uri``, with short HTTP retries and timeouts."""
    for key, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)  # spawned workers inherit them
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ConfigError(
            f"--mlflow {redact(uri)} needs the mlflow package (an http(s):// server does "
            "not): pip install 'tunecb[mlflow]'"
        ) from None
    return MlflowClient(tracking_uri=uri)


def _run(run: Any) -> Run:
    info = run.info
    return Run(
        run_id=info.run_id, experiment_id=info.experiment_id, status=info.status,
        lifecycle_stage=info.lifecycle_stage, tags=dict(run.data.tags),
        artifact_uri=info.artifact_uri or "",
    )  # fmt: skip


class MlflowClientAdapter:
    """:class:`~.client.TrackingClient` on MLflow's ``MlflowClient``."""

    def __init__(self, uri: str) -> None:
        self.client = mlflow_client(uri)

    def experiment(self, name: str) -> tuple[str, str] | None:
        found = self.client.get_experiment_by_name(name)
        return None if found is None else (found.experiment_id, found.lifecycle_stage)

    def create_experiment(self, name: str) -> str:
        return self.client.create_experiment(name)

    def restore_experiment(self, experiment_id: str) -> None:
        self.client.restore_experiment(experiment_id)

    def create_run(self, experiment_id: str, name: str, tags: dict[str, str]) -> Run:
        return _run(self.client.create_run(experiment_id, run_name=name, tags=tags))

    def get_run(self, run_id: str) -> Run | None:
        try:
            return _run(self.client.get_run(run_id))
        except Exception as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower():
                return None
            raise

    def update_run(self, run_id: str, status: str) -> None:
        if status in _FINAL:
            self.client.set_terminated(run_id, status)  # its end time too
        else:
            self.client.update_run(run_id, status=status)

    def log_batch(
        self, run_id: str, metrics: list[Metric], params: dict[str, str], tags: dict[str, str]
    ) -> None:
        from mlflow.entities import Metric as MlflowMetric
        from mlflow.entities import Param, RunTag

        self.client.log_batch(  # MLflow's client splits it within the server's limits
            run_id,
            metrics=[MlflowMetric(*m) for m in metrics],
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.client.set_tag(run_id, key, value)

    def search_runs(
        self, experiment_id: str, query: str, max_results: int, page_token: str | None
    ) -> tuple[list[Run], str | None]:
        page = self.client.search_runs(
            [experiment_id], filter_string=query, max_results=max_results, page_token=page_token
        )  # fmt: skip
        return [_run(run) for run in page], page.token or None

    def metric_steps(self, run_id: str, key: str) -> list[int]:
        return [m.step for m in self.client.get_metric_history(run_id, key)]

    def delete_run(self, run_id: str) -> None:
        self.client.delete_run(run_id)

    def log_artifact(self, run_id: str, path: str, artifact_path: str | None) -> None:
        self.client.log_artifact(run_id, path, artifact_path)
