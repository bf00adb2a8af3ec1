"""Experiment tracking: a search recorded in MLflow as one parent run with a child run per
trial (``--mlflow URI``). Nothing here imports ``mlflow`` until a search or ``tunecb sync``
names a tracking URI.

The modules: :mod:`._base` (the contract, the stored names), :mod:`.mlflow_tracker` (the
MLflow tracker), :mod:`.client` (its seam to the wire: :mod:`.rest_client` for
``http(s)://`` servers, without ``mlflow``; :mod:`.mlflow_client`, MLflow's own client, for
other URIs), :mod:`.records` (a trial's record from tunecb's files), :mod:`.trial` (a
trial's child run, in the worker), :mod:`.search` (the parent run, the gap, sync).

>>> TrialRecord(number=0, state="COMPLETE").tags()["tunecb.state"]
'COMPLETE'
"""

from __future__ import annotations

from tunecb.tracking._base import PARENT_RUN, TRIAL_RUN, Tracker, TrackingError, TrialRecord

__all__ = ["PARENT_RUN", "TRIAL_RUN", "Tracker", "TrackingError", "TrialRecord"]
