"""A failed trial's rerun: one WAITING copy of its parameters, queued once.

Every path that reruns a trial comes here: a stale heartbeat (the storage's callback,
:func:`on_stale`), a dead process, an interrupt (:func:`tunecb.oracle.attempts.requeue`).
The copy holds the attempt's parameters and system attrs, with ``retry_history`` (the numbers
of the attempts it reruns, first first) and ``failed_trial`` (the attempt it directly reruns),
the names Optuna's ``RetryHeartbeatStaleTrialCallback`` uses. Two things differ from that
callback, both found with 200 workers on PostgreSQL (``benchmarks/scale.py``):

- the copy does not inherit the attempt's user attrs: tunecb's say which process runs the
  trial and how it ended, so the copy looked claimed by the old process (a worker that found
  that process dead failed the copy between another worker's pop and its claim) and carried
  the old stop reason;
- a copy is queued only when the study holds none yet (a trial whose ``retry_history`` is
  this attempt's plus its number), so the same attempt is never queued twice.

>>> import optuna
>>> study = optuna.create_study()
>>> trial = study.ask(); _ = trial.suggest_float("x", 0, 1); trial.set_user_attr("worker", "h:1")
>>> _ = study.tell(trial, state=optuna.trial.TrialState.FAIL)
>>> failed = study.trials[0]
>>> requeue(study, failed), requeue(study, failed)
(True, False)
>>> copy = study.trials[1]
>>> copy.state.name, copy.params == failed.params, copy.user_attrs, copy.system_attrs
('WAITING', True, {}, {'failed_trial': 0, 'retry_history': [0]})
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

# Optuna's names (its RetryHeartbeatStaleTrialCallback writes them too).
RETRY_HISTORY, FAILED_TRIAL = "retry_history", "failed_trial"


def requeue(study: optuna.Study, failed: Any) -> bool:
    """Queue a WAITING copy of the finished attempt ``failed`` (a frozen trial) with its
    parameters, unless the study holds one already. ``True`` when this call queued it."""
    history = [*failed.system_attrs.get(RETRY_HISTORY, []), failed.number]
    for trial in study.get_trials(deepcopy=False):
        if trial.number > failed.number and trial.system_attrs.get(RETRY_HISTORY) == history:
            return False
    system_attrs = {**failed.system_attrs, FAILED_TRIAL: failed.number, RETRY_HISTORY: history}
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=failed.params,
            distributions=failed.distributions,
            system_attrs=system_attrs,
        )
    )
    return True


def on_stale(study: optuna.Study, trial: Any) -> None:
    """The storage's ``heartbeat_stale_trial_callback``: rerun a trial failed as stale."""
    requeue(study, trial)
