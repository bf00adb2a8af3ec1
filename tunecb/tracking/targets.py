"""The trackers a search writes to, from its settings: ``--mlflow URI`` (the experiment:
``--mlflow-experiment``, else the study's name) and ``--wandb PROJECT`` (the group: the
study's name); both at once is fine. Each tracker's module is imported only here.

>>> from types import SimpleNamespace
>>> settings = SimpleNamespace(mlflow=None, mlflow_experiment=None, wandb="proj")
>>> [(t.kind.label, t.uri, t.experiment) for t in targets(settings, "digits")]
[('W&B', 'proj', 'digits')]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunecb.storage.urls import redact
from tunecb.tracking._base import MLFLOW, WANDB, Kind, Tracker

# W&B's client runs in a process of its own (:mod:`.remote`); False: in this process (the
# tests that fake the ``wandb`` module here)
WANDB_APART = True
_WANDB, _WANDB_WARM = "tunecb.tracking.wandb_tracker:WandbTracker", "wandb"


@dataclass(frozen=True)
class Target:
    """One tracker of a search: its kind, where (URI or project) and under which name
    (MLflow experiment, W&B group)."""

    kind: Kind
    uri: str
    experiment: str

    @property
    def shown(self) -> str:
        """For messages: the URI without its credentials."""
        return redact(self.uri)

    def tracker(self, check: bool = False) -> Tracker:
        """A tracker of this process (``check``: one that fails fast, as
        :class:`~tunecb.tracking._base.TrackingError`, when it cannot be reached)."""
        if self.kind is WANDB and WANDB_APART:
            from tunecb.tracking.remote import RemoteTracker

            return RemoteTracker(WANDB, self.uri, self.experiment, _WANDB, check, _WANDB_WARM)
        if self.kind is WANDB:
            from tunecb.tracking.wandb_tracker import WandbTracker as cls
        else:
            from tunecb.tracking.mlflow_tracker import MlflowTracker as cls  # type: ignore[assignment]
        return cls.open(self.uri, self.experiment) if check else cls(self.uri, self.experiment)


def targets(settings: Any, name: str) -> list[Target]:
    """The trackers ``settings`` name (none: tracking is off)."""
    found = []
    if settings.mlflow:
        found.append(Target(MLFLOW, settings.mlflow, settings.mlflow_experiment or name))
    if getattr(settings, "wandb", None):
        found.append(Target(WANDB, settings.wandb, name))
    return found
