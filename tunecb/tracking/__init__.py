"""Experiment tracking: a search recorded in MLflow as one parent run with a child run per
trial (``--mlflow URI``), and in W&B as a group with a run per trial and one for the
search (``--wandb PROJECT``). Nothing here imports ``mlflow`` or ``wandb`` until a search
or ``tunecb sync`` names a tracker.

The modules: :mod:`._base` (the contract, the stored names, each tracker's :class:`Kind`),
:mod:`.targets` (which trackers the settings name), :mod:`.mlflow_tracker` (the MLflow
tracker), :mod:`.client` (its seam to the wire: :mod:`.rest_client` for ``http(s)://``
servers, without ``mlflow``; :mod:`.mlflow_client`, MLflow's own client, for other URIs),
:mod:`.wandb_tracker` (the W&B tracker), :mod:`.records` (a trial's record from tunecb's
files), :mod:`.trial` (a trial's run, in the worker), :mod:`.shipper` (the tracker's own
thread), :mod:`.search` (the parent run, the gap, sync). Both trackers go through the
same :mod:`.trial`, :mod:`.shipper` and :mod:`.search`.

>>> TrialRecord(number=0, state="COMPLETE").tags()["tunecb.state"]
'COMPLETE'
"""

from __future__ import annotations

from tunecb.tracking._base import PARENT_RUN, TRIAL_RUN, Tracker, TrackingError, TrialRecord

__all__ = ["PARENT_RUN", "TRIAL_RUN", "Tracker", "TrackingError", "TrialRecord"]
