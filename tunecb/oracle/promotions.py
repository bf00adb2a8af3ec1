"""Paused trials and their continuations: the scheduling half of the promotion pruner
(:mod:`tunecb.study.promotion` decides; this module pauses, finds, claims and resumes).

A trial the pruner paused at a rung is told PRUNED (stop reason ``paused``) with its backup
kept. Before that, its worker files a *ticket* for it: a WAITING trial in the side study
``<study>:promotions`` of the same storage. A free worker (before it asks for a new
configuration) looks for a ticket whose paused trial is now promotable, highest rung first,
and claims it by setting the ticket RUNNING: every Optuna storage (journal file, SQLite,
PostgreSQL, and Dask's, which forwards to one) makes that a compare-and-set from WAITING, so
one worker wins across processes and machines. The winner creates the *continuation*: a
new trial, RUNNING from the start (no other worker can pop it), with the paused trial's
parameters and Optuna's ``retry_history`` ending in the paused number; it resumes from the
configuration's backup, and the paused attempt no longer counts for the budget
(:func:`tunecb.oracle.budget.retried`): ``n_trials`` counts configurations. The ticket is
then COMPLETE, its value the continuation's number.

A ticket claimed by a process of this machine that died before it made the continuation is
released (a new WAITING ticket), as is one claimed by a search of this process that ended
in that window (a full disk: :func:`tunecb.oracle.attempts.owner_runs`, the rule trials
follow too); one claimed on another machine that died in that window stays claimed (that
configuration stays paused).

A multi-objective study (``objectives=``; Optuna takes no ``trial.report`` there) is ranked
at a rung as the Pareto pruner ranks it, with Syne Tune's MOASHA's count: the values each
configuration stored at the rung (``pareto_rung_<epoch>``, by
:mod:`tunecb.training.pareto_pruning`) sorted by non-dominated rank, within a rank by the
hypervolume each adds to its front (:func:`tunecb.oracle.pareto.place`); the top
``n // eta`` are promotable (:func:`pareto_promotable`).

>>> side_name("digits"), is_side("digits:promotions"), is_side("digits")
('digits:promotions', True, False)
"""

from __future__ import annotations

import contextlib
import datetime
import logging
from collections.abc import Callable
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from tunecb.oracle import attrs, pareto
from tunecb.oracle.attempts import owner_runs, running_here
from tunecb.oracle.front import study_objectives
from tunecb.study.promotion import PromotionPruner, configuration

log = logging.getLogger("tunecb")

SUFFIX = ":promotions"
TICKET_PAUSED, TICKET_RUNG = "paused", "rung"  # a ticket's user attrs


def side_name(name: str) -> str:
    """The name of the side study that holds a study's tickets."""
    return f"{name}{SUFFIX}"


def is_side(name: str) -> bool:
    """Whether a study name is a side study's (hidden wherever studies are listed)."""
    return name.endswith(SUFFIX)


def active(study: optuna.Study) -> bool:
    """Whether the study's pruner pauses and promotes."""
    return isinstance(study.pruner, PromotionPruner)


def _side_id(study: optuna.Study, create: bool) -> int | None:
    storage, name = study._storage, side_name(study.study_name)
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        if not create:
            return None
    try:
        return storage.create_new_study([StudyDirection.MINIMIZE], name)
    except optuna.exceptions.DuplicatedStudyError:  # another worker made it first
        return storage.get_study_id_from_name(name)


def pause(study: optuna.Study, number: int, rung: int) -> None:
    """File the ticket of trial ``number``, paused at epoch ``rung`` (before it is told)."""
    ticket = optuna.trial.create_trial(
        state=TrialState.WAITING, user_attrs={TICKET_PAUSED: number, TICKET_RUNG: rung}
    )
    study._storage.create_new_trial(_side_id(study, create=True), template_trial=ticket)


def next_continuation(
    study: optuna.Study, worker: str, last: bool = False,
    resumable: Callable[[int], bool] | None = None, held: Callable[[int], bool] | None = None,
) -> optuna.Trial | None:  # fmt: skip
    """Claim the most advanced paused trial that is promotable now and return its
    continuation (RUNNING, owned by ``worker``), or ``None`` when there is none.

    ``last``: no new configuration will come (the budget is spent), so the best paused one
    of a rung is promotable even where fewer than ``eta`` reached it; else a small search
    would end with its best configurations paused short of the last epoch.
    ``resumable(first attempt's number)``: whether this worker sees the configuration's
    backup (machines with results folders of their own each resume their own).
    ``held(paused trial's number)``: whether this worker keeps its model in memory
    (:mod:`tunecb.training.kept_models`); those come first, then the rest, each in
    :func:`promotable`'s order."""
    if not active(study):
        return None
    side = _side_id(study, create=False)
    if side is None:
        return None
    storage = study._storage
    tickets = storage.get_all_trials(side, deepcopy=False)
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    if _release_dead_claims(study, tickets, trials):
        tickets = storage.get_all_trials(side, deepcopy=False)
    made = {t.system_attrs.get(attrs.PROMOTED_FROM) for t in trials}
    found = promotable(study, tickets, by_number, trials, last)
    if held is not None:
        found.sort(key=lambda pair: not held(pair[1].number))  # stable: in order within
    for ticket, paused in found:
        if resumable is not None and not resumable(configuration(paused)):
            continue
        if paused.number in made:
            continue
        # registered before the claim is written: this process's other threads must never
        # judge a claim it is making its continuation of dead (owner_runs)
        with running_here(storage, ticket._trial_id):
            if _claim(storage, ticket._trial_id, worker):
                return _continue(study, ticket._trial_id, paused)
    return None


def promotable(
    study: optuna.Study, tickets: list[FrozenTrial], by_number: dict[int, FrozenTrial],
    trials: list[FrozenTrial], last: bool = False,
) -> list[tuple[FrozenTrial, FrozenTrial]]:  # fmt: skip
    """``(ticket, paused trial)`` of the waiting tickets whose trial is promotable now,
    highest rung first, best first within a rung."""
    pruner = study.pruner
    assert isinstance(pruner, PromotionPruner)
    objectives = study_objectives(study)
    maximize = objectives is None and study.direction == StudyDirection.MAXIMIZE
    ups = [o.maximize for o in objectives] if objectives else []
    found = []
    for ticket in tickets:
        if ticket.state != TrialState.WAITING:
            continue
        paused = by_number.get(int(ticket.user_attrs[TICKET_PAUSED]))
        if not _is_paused(paused):
            continue
        rung = int(ticket.user_attrs[TICKET_RUNG])
        if objectives:
            own = paused.user_attrs.get(f"{attrs.PARETO_RUNG}{rung}")
            placed = pareto_place(trials, configuration(paused), own, rung, ups)
            if placed is not None and placed[0] < _top(placed[1], pruner.eta, last):
                found.append(((-rung, placed[0]), ticket, paused))
        elif pruner.promotable_at(trials, paused, rung, maximize, last):
            value = paused.intermediate_values[rung]
            found.append(((-rung, -value if maximize else value), ticket, paused))
    found.sort(key=lambda item: item[0])
    return [(ticket, paused) for _, ticket, paused in found]


def _top(n: int, eta: int, last: bool) -> int:
    return max(1, n // eta) if last else n // eta


def rung_vectors(trials: list[Any], rung: int) -> dict[int, list[float]]:
    """``{configuration: values it stored at rung}`` of a multi-objective study (a failed
    attempt's left out: its rerun stores them anew; a configuration counted once)."""
    key = f"{attrs.PARETO_RUNG}{rung}"
    found: dict[int, list[float]] = {}
    for t in trials:
        value = t.user_attrs.get(key)
        if t.state != TrialState.FAIL and isinstance(value, list) and pareto.finite(value):
            found[configuration(t)] = value
    return found


def pareto_place(
    trials: list[Any], config: int, own: Any, rung: int, maximize: list[bool]
) -> tuple[int, int] | None:
    """Configuration ``config``'s place (0: best) at ``rung`` by the Pareto pruner's order
    (:func:`tunecb.oracle.pareto.place`), its values there ``own``, and how many
    configurations reached the rung; ``None`` when ``own`` are not finite numbers."""
    if not isinstance(own, list | tuple) or not pareto.finite(own):
        return None
    vectors = rung_vectors(trials, rung)
    vectors[config] = list(own)
    configs = list(vectors)
    placed = pareto.place(configs.index(config), [vectors[c] for c in configs], maximize)
    return placed, len(configs)


def pareto_promotable(
    trials: list[Any], config: int, own: Any, rung: int, maximize: list[bool], eta: int,
    last: bool = False,
) -> bool:  # fmt: skip
    """Whether configuration ``config`` with values ``own`` at ``rung`` is in the top
    ``n // eta`` of the configurations that reached it (MOASHA; with ``last``, at least
    the top one).

    >>> from optuna.trial import create_trial
    >>> others = [create_trial(state=TrialState.PRUNED, user_attrs={"pareto_rung_1": v})
    ...           for v in ([0.5, 100], [0.6, 90])]
    >>> for number, trial in enumerate(others):
    ...     trial.number = number
    >>> pareto_promotable(others, 2, [0.9, 10], 1, [True, False], eta=3)
    True
    >>> pareto_promotable(others, 2, [0.4, 200], 1, [True, False], eta=3)
    False
    """
    placed = pareto_place(trials, config, own, rung, maximize)
    return placed is not None and placed[0] < _top(placed[1], eta, last)


def _is_paused(trial: FrozenTrial | None) -> bool:
    return (
        trial is not None
        and trial.state == TrialState.PRUNED
        and trial.user_attrs.get(attrs.STOP_REASON) == attrs.PAUSED
    )


def _claim(storage: Any, ticket_id: int, worker: str) -> bool:
    """Set the ticket RUNNING: ``True`` for the one worker that did it (compare-and-set)."""
    try:
        won = storage.set_trial_state_values(ticket_id, state=TrialState.RUNNING)
    except RuntimeError:  # finished meanwhile (UpdateFinishedTrialError is one)
        return False
    if won:
        storage.set_trial_user_attr(ticket_id, attrs.WORKER, worker)
        start = attrs.process_start()
        if start is not None:
            storage.set_trial_user_attr(ticket_id, attrs.WORKER_START, start)
    return bool(won)


def _continue(study: optuna.Study, ticket_id: int, paused: FrozenTrial) -> optuna.Trial:
    """Create the continuation of ``paused`` (RUNNING) and close the ticket with its number."""
    history = [*paused.system_attrs.get(attrs.RETRY_HISTORY, []), paused.number]
    system = {k: v for k, v in paused.system_attrs.items() if k != attrs.FAILED_TRIAL}
    system.update({attrs.RETRY_HISTORY: history, attrs.PROMOTED_FROM: paused.number})
    template = FrozenTrial(
        number=-1, state=TrialState.RUNNING, value=None,
        datetime_start=datetime.datetime.now(), datetime_complete=None,
        params=paused.params, distributions=paused.distributions, user_attrs={},
        system_attrs=system, intermediate_values={}, trial_id=-1,
    )  # fmt: skip
    storage = study._storage
    trial_id = storage.create_new_trial(study._study_id, template_trial=template)
    number = storage.get_trial_number_from_id(trial_id)
    storage.set_trial_state_values(ticket_id, state=TrialState.COMPLETE, values=[number])
    log.info("trial %d resumes trial %d from epoch %d", number, paused.number, paused.last_step)
    return optuna.Trial(study, trial_id)


def _release_dead_claims(
    study: optuna.Study, tickets: list[FrozenTrial], trials: list[FrozenTrial]
) -> bool:
    """Tickets claimed by a dead process of this machine (or by a search of this process
    that ended: :func:`~tunecb.oracle.attempts.owner_runs`): closed with the continuation it
    made, if it made one, else closed (FAIL) and filed again. Whether any was filed again."""
    made = {t.system_attrs.get(attrs.PROMOTED_FROM): t.number for t in trials}
    again = False
    for ticket in tickets:
        if ticket.state != TrialState.RUNNING:
            continue
        if owner_runs(study._storage, ticket) is not False:
            continue
        paused = int(ticket.user_attrs[TICKET_PAUSED])
        storage = study._storage
        with contextlib.suppress(RuntimeError):  # another worker released it first
            if paused in made:
                storage.set_trial_state_values(
                    ticket._trial_id, state=TrialState.COMPLETE, values=[made[paused]]
                )
                continue
            storage.set_trial_state_values(ticket._trial_id, state=TrialState.FAIL)
            pause(study, paused, int(ticket.user_attrs[TICKET_RUNG]))
            again = True
    return again


def continued(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of the paused attempts that a continuation took over (a report shows a
    configuration once: its latest attempt, whose history and checkpoint are whole)."""
    return {
        int(t.system_attrs[attrs.PROMOTED_FROM])
        for t in trials
        if attrs.PROMOTED_FROM in t.system_attrs
    }


def segments(trials: list[FrozenTrial]) -> dict[int, str]:
    """``{trial number: "1→3→9"}``: the epochs at which each configuration that was paused
    stopped, segment by segment, up to its latest attempt (``"1→3 paused"`` while paused).

    >>> first = optuna.trial.create_trial(
    ...     state=TrialState.PRUNED, user_attrs={"stop_reason": "paused", "epochs_run": 1})
    >>> then = optuna.trial.create_trial(
    ...     value=0.9, user_attrs={"epochs_run": 9},
    ...     system_attrs={"retry_history": [0], "promoted_from": 0})
    >>> first.number, then.number = 0, 1
    >>> segments([first, then])
    {1: '1→9'}
    """
    by_number = {t.number: t for t in trials}
    hidden = continued(trials)
    found = {}
    for t in trials:
        if t.number in hidden:
            continue
        ends = [
            _epochs(by_number[n])
            for n in t.system_attrs.get(attrs.RETRY_HISTORY, [])
            if n in by_number and _is_paused(by_number[n])
        ]
        if not ends and not _is_paused(t):
            continue
        text = "→".join(str(e) for e in [*ends, _epochs(t)])
        found[t.number] = f"{text} paused" if _is_paused(t) else text
    return found


def _epochs(trial: FrozenTrial) -> int | None:
    """The epochs a configuration had trained when this attempt ended."""
    return trial.user_attrs.get(attrs.EPOCHS_RUN) or trial.last_step
