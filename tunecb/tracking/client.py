"""The seam between the MLflow tracker and the wire: a small client of MLflow's tracking
API, in plain Python values. Two implement it: :class:`~.rest_client.RestClient`
(``http(s)://`` URIs: MLflow's REST API over ``http.client``, without ``import mlflow``)
and :class:`~.mlflow_client.MlflowClientAdapter` (every other URI MLflow's client takes:
``sqlite:``, ``databricks``, a folder; and servers that need MLflow's auth plugins).

>>> uses_rest("http://u:p@127.0.0.1:5000"), uses_rest("sqlite:///mlflow.db")
(True, False)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol
from urllib.parse import urlsplit

# MLflow's auth that only its own client speaks (AWS SigV4, request-auth plugins).
_PLUGIN_AUTH = ("MLFLOW_TRACKING_AWS_SIGV4", "MLFLOW_TRACKING_AUTH")


class Metric(NamedTuple):
    """One metric value of a run (``timestamp`` in ms since the epoch, ``step``: the epoch)."""

    key: str
    value: float
    timestamp: int
    step: int


@dataclass
class Run:
    """What tunecb reads of a run."""

    run_id: str
    experiment_id: str
    status: str = "RUNNING"
    lifecycle_stage: str = "active"
    tags: dict[str, str] = field(default_factory=dict)
    artifact_uri: str = ""


class TrackingClient(Protocol):
    """The requests tunecb makes of an MLflow tracking store (one client per thread)."""

    def experiment(self, name: str) -> tuple[str, str] | None:
        """``(experiment id, lifecycle stage)`` of experiment ``name``; ``None``: none."""
        ...

    def create_experiment(self, name: str) -> str: ...

    def restore_experiment(self, experiment_id: str) -> None: ...

    def create_run(self, experiment_id: str, name: str, tags: dict[str, str]) -> Run: ...

    def get_run(self, run_id: str) -> Run | None:
        """The run; ``None`` when the store has no run of that id."""
        ...

    def update_run(self, run_id: str, status: str) -> None:
        """Set the run's status (its end time too, when ``status`` is a final one)."""
        ...

    def log_batch(
        self, run_id: str, metrics: list[Metric], params: dict[str, str], tags: dict[str, str]
    ) -> None:
        """Log them all (split into requests within MLflow's limits)."""
        ...

    def set_tag(self, run_id: str, key: str, value: str) -> None: ...

    def search_runs(
        self, experiment_id: str, query: str, max_results: int, page_token: str | None
    ) -> tuple[list[Run], str | None]:
        """One page of the active runs that match ``query``, and the next page's token."""
        ...

    def metric_steps(self, run_id: str, key: str) -> list[int]:
        """The steps the run holds of metric ``key``."""
        ...

    def delete_run(self, run_id: str) -> None: ...

    def log_artifact(self, run_id: str, path: str, artifact_path: str | None) -> None:
        """Upload the file ``path`` into the run's artifacts (under ``artifact_path``)."""
        ...


def uses_rest(uri: str) -> bool:
    """Whether tunecb's own REST client serves ``uri``: an ``http(s)://`` server whose
    credentials, if any, are a user and password or a token."""
    if urlsplit(uri).scheme not in ("http", "https"):
        return False
    return not any(os.environ.get(name) for name in _PLUGIN_AUTH)
