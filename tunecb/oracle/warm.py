"""Warm start (``--warm-start DIR|URL``): an earlier study's finished trials as prior knowledge.

The source is an earlier study's results folder, or a storage (an Optuna RDB URL such as
``sqlite:///old.db`` or ``postgresql://...``, ``journal:PATH`` or a journal file) with the
study named by ``--warm-start-study`` (needed only when the storage holds several). The new
study's space is known only when its builder runs, so the launcher checks the source and
names it on the study (:func:`prepare`), and the first trial to build (:func:`seed`, from
the runner) adds the earlier trials whose every parameter fits what the builder asked:

- a COMPLETE trial as a COMPLETE trial with its earlier value;
- a PRUNED trial as a PRUNED trial with its last intermediate value at its last epoch, so
  that TPE ranks it as it ranks the study's own pruned trials (after the complete ones,
  those that went further first, then by that value);

with the new distributions and the user attribute ``warm_start`` (``{"from": source,
"number": n}``, and ``"epoch"`` for a pruned one). They are not trained, do not count in
``n_trials`` (stop reason ``warm_start``), and are never the study's best: their values come
from another study, and they have no checkpoint here. With ``--warm-start-enqueue K`` the K
best COMPLETE ones are queued when the study is created (:func:`queue_best`), with their
values as the source holds them, as given configurations (trained, counted, marked
``given`` with ``"warm": true``): they run first. The new space is not known then: a value
it does not contain (a narrowed range) is dropped when the trial asks it and sampled
instead, and a parameter it no longer asks is left out; the trial says so and records it
(``"dropped"``), where a configuration given with ``--enqueue`` is refused.

>>> fits({"lr": 0.01}, {"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)})
True
>>> fits({"lr": 0.5}, {"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)})
False
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from tunecb.errors import ConfigError
from tunecb.oracle.attrs import (
    GIVEN,
    STOP_REASON,
    STUDY_MONITOR,
    WARM_FROM,
    WARM_START,
    WARM_START_REASON,
)
from tunecb.oracle.distributions import problem
from tunecb.oracle.promotions import is_side
from tunecb.storage.urls import is_journal_url, open_storage, redact

__all__ = ["Source", "check", "fits", "locate", "prepare", "queue_best", "seed"]

_FIX = (
    "give a tunecb results folder (results/<study>), or a storage URL (sqlite:///old.db, "
    "postgresql://..., a .journal file) with --warm-start-study NAME"
)


@dataclass(frozen=True)
class Source:
    """Where the earlier study is: ``shown`` (the folder, or the URL without its password),
    ``url`` (``None``: the folder's own journal), ``root`` (the folder, or ``None``) and the
    study's name."""

    shown: str
    url: str | None
    root: Path | None
    study: str

    def load(self, url: str | None = None) -> optuna.Study:
        """The earlier study (``url``: this source's URL with its password, when the source
        stored none)."""
        if self.root is not None:
            storage = open_storage(None, self.root)
        else:
            storage = open_storage(self.url or url, Path("."))
        return optuna.load_study(study_name=self.study, storage=storage)


def locate(source: str, study: str | None = None) -> Source:
    """The earlier study ``source`` names (``study``: its name in a storage that holds
    several); a one-line :class:`ConfigError` when there is none."""
    path = Path(source).expanduser()
    if path.is_dir():
        root = path.resolve()
        meta = root / "study.json"
        if not (root / "optuna.journal").is_file() or not meta.is_file():
            raise ConfigError(
                f"--warm-start {source}: not a tunecb results folder (no study.json and "
                f"optuna.journal in it); {_FIX}"
            )
        return Source(str(root), None, root, study or json.loads(meta.read_text())["name"])
    url = source
    if is_journal_url(source):
        file = Path(source.removeprefix("journal:")).expanduser()
        if not file.is_file():
            raise ConfigError(f"--warm-start {source}: no such folder or journal file; {_FIX}")
        url = f"journal:{file.resolve()}"
    elif source.startswith("sqlite:///") and not Path(source[10:]).expanduser().is_file():
        raise ConfigError(f"--warm-start {source}: no such SQLite file; {_FIX}")
    shown = redact(url)  # a storage that cannot be reached: its StorageError (exit 1)
    summaries = optuna.get_all_study_summaries(open_storage(url, Path(".")))
    names = [s.study_name for s in summaries if not is_side(s.study_name)]
    if study is None and len(names) == 1:
        study = names[0]
    if study is None or study not in names:
        given = f"no study {study!r}" if study else f"{len(names)} studies"
        raise ConfigError(
            f"--warm-start {shown}: {given} in this storage ({', '.join(names) or 'none'}); "
            "name the one to start from with --warm-start-study NAME"
        )
    return Source(shown, url if shown == url else None, None, study)


def check(
    source: str, monitor: str, direction: str, study: str | None = None
) -> tuple[Source, optuna.Study]:
    """The earlier study, when it optimises ``monitor`` in ``direction``; else a one-line
    :class:`ConfigError` (before anything is written)."""
    found = locate(source, study)
    earlier = found.load(source if found.url is None and found.root is None else None)
    # A results folder's study.json says what it optimised; a storage's study, its own
    # attribute (none: a study not run by tunecb, taken for the same monitor).
    meta = json.loads((found.root / "study.json").read_text()) if found.root else {}
    theirs = meta.get("monitor") or earlier.user_attrs.get(STUDY_MONITOR, monitor)
    if len(earlier.directions) > 1:
        raise ConfigError(
            f"--warm-start {found.shown}: study {found.study!r} optimises several objectives; "
            "warm start from a study with one objective, the same monitor and direction"
        )
    way = meta.get("direction") or earlier.direction.name.lower()
    if (theirs, way) != (monitor, direction):
        raise ConfigError(
            f"--warm-start {found.shown}: study {found.study!r} optimises {theirs} ({way}), "
            f"this one {monitor} ({direction}); warm start from a study with the same monitor "
            "and direction"
        )
    return found, earlier


def prepare(
    study: optuna.Study,
    source: str,
    monitor: str,
    direction: str,
    name: str | None = None,
    best: int = 0,
) -> list[str]:
    """Check ``source`` (:func:`check`; ``name``: its study), name it on ``study`` for
    :func:`seed`, and queue its ``best`` configurations to run first (:func:`queue_best`;
    once, when the study is first warm-started); the note to show."""
    found, source_study = check(source, monitor, direction, name)
    earlier = study.user_attrs.get(WARM_FROM)
    if earlier and (earlier["from"], earlier["study"]) != (found.shown, found.study):
        raise ConfigError(
            f"--warm-start {found.shown}: study {study.study_name!r} was warm-started from "
            f"{earlier['from']} (study {earlier['study']!r}); use --study-name NEW to start "
            "from another study"
        )
    if earlier:  # continued: its best were queued when the study began
        return [_noted(found, 0)]
    url = None if found.root else found.url
    queued = queue_best(study, source_study, best, found.shown)
    study.set_user_attr(WARM_FROM, {"from": found.shown, "study": found.study, "url": url,
                                    "enqueue": best, "queued": queued})  # fmt: skip
    return [_noted(found, queued)]


def _noted(found: Source, queued: int) -> str:
    first = ""
    if queued:
        first = (f"; its best {queued} complete trial{'s' * (queued != 1)} queued to run "
                 "first (a value outside this study's space is sampled instead)")  # fmt: skip
    return (
        f"warm start from {found.shown} (study {found.study!r}): its finished trials that "
        "fit this study's space are added when the first trial builds its model (not "
        f"trained, not counted in n_trials){first}"
    )


def queue_best(study: optuna.Study, source: optuna.Study, k: int, shown: str) -> int:
    """Queue the ``k`` best COMPLETE trials of ``source`` as given configurations, with
    their parameters as the source holds them, to run before the sampler's own; how many.
    The new space is not known yet: a value it does not contain is dropped when the trial
    asks it (:func:`tunecb.oracle.space.guard`), and sampled instead."""
    if k <= 0:
        return 0
    complete = [t for t in source.get_trials(deepcopy=False)
                if t.state == TrialState.COMPLETE and _usable(t)]  # fmt: skip
    maximize = source.direction == optuna.study.StudyDirection.MAXIMIZE
    ranked = sorted(complete, key=lambda t: float(t.value or 0.0), reverse=maximize)
    for t in ranked[:k]:
        where = f"--warm-start-enqueue: {shown} trial {t.number}"
        mark = {"from": where, "params": t.params, "warm": True}
        study.enqueue_trial(t.params, user_attrs={GIVEN: mark})
    return len(ranked[:k])


def fits(params: dict[str, Any], asked: dict[str, BaseDistribution]) -> bool:
    """Whether every parameter of an earlier trial is asked now, and its value fits."""
    return all(
        name in asked and problem(name, v, asked[name]) is None for name, v in params.items()
    )


def _from_a_folder(trial: Any) -> bool:
    """Whether ``trial`` is a warm-start prior from another study (not the prior that
    tells the sampler of a killed configuration: :func:`tunecb.oracle.deaths.tell_sampler`)."""
    from tunecb.oracle.attrs import KILLED_PRIOR

    return (trial.user_attrs.get(WARM_START) or {}).get("from") not in (None, KILLED_PRIOR)


def _last(trial: FrozenTrial) -> tuple[int, float] | None:
    """A pruned trial's last epoch and value (``None``: it reported none that is finite)."""
    if not trial.intermediate_values:
        return None
    step = max(trial.intermediate_values)
    value = trial.intermediate_values[step]
    return (step, value) if math.isfinite(value) else None


def _usable(trial: FrozenTrial) -> bool:
    if WARM_START in trial.user_attrs:  # the source's own prior trials: not passed on
        return False
    if trial.state == TrialState.COMPLETE:
        return trial.value is not None and math.isfinite(trial.value)
    return trial.state == TrialState.PRUNED and _last(trial) is not None


def _copy(trial: FrozenTrial, asked: dict[str, BaseDistribution], shown: str) -> FrozenTrial:
    mark: dict[str, Any] = {"from": shown, "number": trial.number}
    extra: dict[str, Any] = {"value": trial.value}
    if trial.state == TrialState.PRUNED:
        step, value = _last(trial)  # type: ignore[misc]
        mark["epoch"] = step
        extra = {"state": TrialState.PRUNED, "intermediate_values": {step: value}}
    return optuna.trial.create_trial(
        params=trial.params,
        distributions={name: asked[name] for name in trial.params},
        user_attrs={WARM_START: mark, STOP_REASON: WARM_START_REASON},
        **extra,
    )


def seed(
    study: optuna.Study, asked: dict[str, BaseDistribution], number: int, given: str | None = None
) -> list[str]:
    """Add the warm-start source's finished trials that fit ``asked`` (the space trial
    ``number`` asked); the note to log (empty: nothing done). ``given``: this process's
    ``--warm-start`` (a URL whose password the study does not store). Once per study: not
    when trials of that source are in it already, and only by the lowest-numbered running
    trial (workers whose first trials build at the same moment do not both add them)."""
    source = study.user_attrs.get(WARM_FROM)
    if not source or "added" in source:  # no warm start, or done (perhaps with none fitting)
        return []
    trials = study.get_trials(deepcopy=False)
    if any(_from_a_folder(t) for t in trials):
        return []
    running = [t.number for t in trials if t.state == TrialState.RUNNING]
    if running and min(running) < number:
        return []
    shown, url = source["from"], source.get("url")
    root = Path(shown) if url is None and Path(shown).is_dir() else None
    if root is None and url is None and given is None:
        return [
            f"warm start from {shown}: not added by this process (the study does not store "
            "the URL's password); a launcher with --warm-start adds them"
        ]
    earlier = Source(shown, url, root, source["study"]).load(given)
    done = [t for t in earlier.get_trials(deepcopy=False) if _usable(t)]
    copies = [_copy(t, asked, shown) for t in done if fits(t.params, asked)]
    for copy in copies:
        study.add_trial(copy)
    study.set_user_attr(WARM_FROM, {**source, "added": len(copies)})
    complete = sum(t.state == TrialState.COMPLETE for t in done)
    fit = sum(t.state == TrialState.COMPLETE for t in copies)
    text = (
        f"warm start: {fit} of the {complete} complete trials and {len(copies) - fit} of the "
        f"{len(done) - complete} pruned trials of {shown} fit this study's space and were "
        "added as prior knowledge"
    )
    return [text]
