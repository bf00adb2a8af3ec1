"""Warm start (``--warm-start DIR``): an earlier study's finished trials as prior knowledge.

The new study's space is known only when its builder runs, so the launcher checks the
earlier results folder and names it on the study (:func:`prepare`), and the first trial
to build (:func:`seed`, from the runner) adds the earlier COMPLETE trials whose every
parameter fits what the builder asked: COMPLETE trials of the new study with the earlier
value, the new distributions, and the user attribute ``warm_start`` (``{"from": folder,
"number": n}``). They are not trained, do not count in ``n_trials`` (stop reason
``warm_start``), and are never the study's best (:func:`best`): their values come from
another study, and they have no checkpoint here.

>>> fits({"lr": 0.01}, {"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)})
True
>>> fits({"lr": 0.5}, {"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)})
False
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from tunecb.errors import ConfigError
from tunecb.oracle.attrs import STOP_REASON, WARM_FROM, WARM_START, WARM_START_REASON
from tunecb.oracle.given import problem

__all__ = ["check", "fits", "prepare", "seed"]

_FIX = "give a tunecb results folder, e.g. results/<study>"


def _source(folder: str) -> tuple[Path, dict[str, Any]]:
    root = Path(folder).expanduser().resolve()
    meta = root / "study.json"
    if not (root / "optuna.journal").is_file() or not meta.is_file():
        raise ConfigError(
            f"--warm-start {folder}: not a tunecb results folder (no study.json and "
            f"optuna.journal in it); {_FIX}"
        )
    return root, json.loads(meta.read_text())


def check(folder: str, monitor: str, direction: str) -> tuple[Path, dict[str, Any]]:
    """The results folder ``folder`` and its study.json, when it holds a study with the same
    monitor and direction; else a one-line :class:`ConfigError` (before anything is written).
    """
    root, meta = _source(folder)
    if (meta.get("monitor"), meta.get("direction")) != (monitor, direction):
        raise ConfigError(
            f"--warm-start {folder}: study {meta.get('name')!r} optimises "
            f"{meta.get('monitor')} ({meta.get('direction')}), this one {monitor} "
            f"({direction}); warm start from a study with the same monitor and direction"
        )
    return root, meta


def prepare(study: optuna.Study, folder: str, monitor: str, direction: str) -> list[str]:
    """Check ``folder`` (:func:`check`) and name it on ``study`` for :func:`seed`; the note
    to show."""
    root, meta = check(folder, monitor, direction)
    earlier = study.user_attrs.get(WARM_FROM)
    if earlier and earlier["from"] != str(root):
        raise ConfigError(
            f"--warm-start {folder}: study {study.study_name!r} was warm-started from "
            f"{earlier['from']}; use --study-name NEW to start from another study"
        )
    if not earlier:
        study.set_user_attr(WARM_FROM, {"from": str(root), "study": meta["name"]})
    return [
        f"warm start from {root} (study {meta['name']!r}): its finished trials that fit "
        "this study's space are added when the first trial builds its model (not trained, "
        "not counted in n_trials)"
    ]


def fits(params: dict[str, Any], asked: dict[str, BaseDistribution]) -> bool:
    """Whether every parameter of an earlier trial is asked now, and its value fits."""
    return all(
        name in asked and problem(name, v, asked[name]) is None for name, v in params.items()
    )


def _from_a_folder(trial: Any) -> bool:
    """Whether ``trial`` is a warm-start prior from a results folder (not the prior that
    tells the sampler of a killed configuration: :func:`tunecb.oracle.deaths.tell_sampler`)."""
    from tunecb.oracle.attrs import KILLED_PRIOR

    return (trial.user_attrs.get(WARM_START) or {}).get("from") not in (None, KILLED_PRIOR)


def seed(study: optuna.Study, asked: dict[str, BaseDistribution], number: int) -> list[str]:
    """Add the warm-start source's COMPLETE trials that fit ``asked`` (the space trial
    ``number`` asked); the note to log (empty: nothing done). Once per study: not when
    trials of that source are in it already, and only by the lowest-numbered running trial
    (workers whose first trials build at the same moment do not both add them)."""
    source = study.user_attrs.get(WARM_FROM)
    if not source or "added" in source:  # no warm start, or done (perhaps with none fitting)
        return []
    trials = study.get_trials(deepcopy=False)
    if any(_from_a_folder(t) for t in trials):
        return []
    running = [t.number for t in trials if t.state == TrialState.RUNNING]
    if running and min(running) < number:
        return []
    from tunecb.storage.urls import open_storage

    root, meta = _source(source["from"])
    earlier = optuna.load_study(study_name=meta["name"], storage=open_storage(None, root))
    done = [
        t
        for t in earlier.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and math.isfinite(t.value)
    ]
    added = 0
    for t in done:
        if not fits(t.params, asked):
            continue
        study.add_trial(
            optuna.trial.create_trial(
                params=t.params,
                distributions={name: asked[name] for name in t.params},
                value=t.value,
                user_attrs={
                    WARM_START: {"from": str(root), "number": t.number},
                    STOP_REASON: WARM_START_REASON,
                },
            )
        )
        added += 1
    study.set_user_attr(WARM_FROM, {**source, "added": added})
    return [
        f"warm start: {added} of the {len(done)} complete trials of {root} fit this "
        "study's space and were added as prior knowledge"
    ]
