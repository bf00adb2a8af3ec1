"""The search space a study already holds, checked against the one its builder asks now.

The space is only known when the model builder runs, so it is checked there: :func:`guard`
wraps a trial's suggestions so that the first one Optuna cannot store next to the study's
earlier trials (another kind, a changed ``log``, other categorical choices) raises one
:class:`SpaceChanged` naming the parameter and the fix, before the builder goes on; the
trial is then discarded (not counted). A change Optuna can take (a range moved, a parameter
added or no longer asked) is described once by :func:`diff`, with the number of finished
trials that fall outside the new space.

What Optuna's TPE does with those trials (optuna 4-5, ``samplers/_tpe``): it keeps them.
For a parameter whose range moved, each earlier value becomes a kernel of the Parzen
estimator truncated to the new range, so a good earlier trial outside it pulls new draws
towards the nearest bound of the new range. tunecb's default sampler
(:class:`tunecb.study.space_sampler.InSpaceTPESampler`) leaves those trials out: the
sampler learns only from the trials inside the space asked now. A trial that lacks a newly
added parameter is left out of that parameter's model (its other parameters still count).

>>> old = {"lr": FloatDistribution(1e-4, 1e-1, log=True), "units": IntDistribution(8, 32)}
>>> new = {"lr": FloatDistribution(1e-3, 1e-2, log=True), "drop": FloatDistribution(0, 0.5)}
>>> for line in diff(old, new, []):
...     print(line)
lr: range 0.0001..0.1 (log) is now 0.001..0.01 (log); 0 finished trials fall outside
drop: new parameter (the earlier trials have no value for it)
units: not asked by this trial (removed, or asked only by some trials)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,  # noqa: F401 (the doctests' names)
    IntDistribution,  # noqa: F401
    check_distribution_compatibility,
)

from tunecb.errors import ConfigError
from tunecb.oracle.attrs import FINISHED, GIVEN, SPACE_NOTED, TRIAL_STUDY_SHA
from tunecb.oracle.distributions import describe, problem, range_text
from tunecb.study.space_sampler import InSpaceTPESampler, inside

__all__ = [
    "GivenInvalid",
    "Refused",
    "SpaceChanged",
    "built",
    "check_given",
    "diff",
    "guard",
    "notice",
    "outside",
    "recorded",
    "sampler_use",
]


class Refused(ConfigError):
    """A trial's space is refused while its builder runs, before it trains: the search
    stops, and the trial is discarded (not counted)."""


class SpaceChanged(Refused):
    """The builder asks a parameter in a way Optuna cannot store next to the study's
    earlier trials."""


class GivenInvalid(Refused):
    """A given configuration (``--enqueue``) does not fit what the builder asks."""


def recorded(trials: Iterable[Any], but: int | None = None) -> dict[str, BaseDistribution]:
    """Each parameter's distribution in the study's trials (the latest trial's), leaving out
    trial number ``but``.

    >>> t = optuna.trial.create_trial(params={"x": 1}, distributions={"x": IntDistribution(0, 3)},
    ...                               value=0.0)
    >>> recorded([t])
    {'x': IntDistribution(high=3, log=False, low=0, step=1)}
    """
    space: dict[str, BaseDistribution] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.number != but:
            space.update(trial.distributions)
    return space


def outside(trials: Iterable[Any], name: str, dist: BaseDistribution) -> int:
    """How many finished ``trials`` hold a value of ``name`` that ``dist`` does not contain."""
    count = 0
    for trial in trials:
        if trial.state not in FINISHED or name not in trial.params:
            continue
        try:
            inside = dist._contains(dist.to_internal_repr(trial.params[name]))
        except (ValueError, TypeError):
            inside = False
        count += not inside
    return count


def diff(
    old: dict[str, BaseDistribution], new: dict[str, BaseDistribution], trials: Iterable[Any]
) -> list[str]:
    """One line per parameter whose distribution changed, was added, or was not asked;
    empty when the space is the same."""
    trials = list(trials)
    lines = []
    for name, dist in new.items():
        before = old.get(name)
        if before is None:
            lines.append(f"{name}: new parameter (the earlier trials have no value for it)")
        elif before != dist:
            n = outside(trials, name, dist)
            falls = "1 finished trial falls" if n == 1 else f"{n} finished trials fall"
            lines.append(f"{name}: {_changed(before, dist)}; {falls} outside")
    lines += [
        f"{name}: not asked by this trial (removed, or asked only by some trials)"
        for name in old
        if name not in new
    ]
    return lines


def _changed(before: BaseDistribution, now: BaseDistribution) -> str:
    if isinstance(before, CategoricalDistribution) or type(before) is not type(now):
        return f"{describe(before)} is now {describe(now)}"
    return f"range {range_text(before)} is now {range_text(now)}"  # type: ignore[arg-type]


def conflict(
    name: str, before: BaseDistribution, now: BaseDistribution, study: str,
    folder: str = "RESULTS/STUDY",
) -> SpaceChanged | None:  # fmt: skip
    """The error to raise when Optuna cannot store ``now`` next to ``before``, else ``None``.

    >>> print(conflict("lr", FloatDistribution(1e-3, 1, log=True), FloatDistribution(1e-3, 1),
    ...                "s"))  # doctest: +NORMALIZE_WHITESPACE
    study 's': parameter 'lr' was float 0.001..1 (log) in its earlier trials and the builder
    now asks float 0.001..1; Optuna cannot mix the two in one study: use --study-name NEW
    --warm-start RESULTS/STUDY for a new study that learns from the earlier trials that fit,
    or give 'lr' its earlier definition
    >>> conflict("lr", FloatDistribution(1e-3, 1), FloatDistribution(1e-2, 1), "s") is None
    True
    """
    try:
        check_distribution_compatibility(before, now)
    except ValueError:
        return SpaceChanged(
            f"study {study!r}: parameter {name!r} was {describe(before)} in its earlier trials "
            f"and the builder now asks {describe(now)}; Optuna cannot mix the two in one "
            f"study: use --study-name NEW --warm-start {folder} for a new study that learns "
            f"from the earlier trials that fit, or give {name!r} its earlier definition"
        )
    return None


class Guard:
    """What :func:`guard` installed on one trial: the distributions it asked (``asked``),
    the study's earlier ones (``earlier``) and its given configuration (``given``: the
    ``given`` user attribute, or ``None``)."""

    def __init__(self, earlier: dict[str, BaseDistribution], given: dict | None) -> None:
        self.earlier = earlier
        self.given = given
        self.asked: dict[str, BaseDistribution] = {}
        self.dropped: list[str] = []  # a warm start's given values outside the space asked
        self.refused: Refused | None = None  # raised before the builder ran (tunecb's own asks)


def guard(trial: optuna.Trial, folder: str = "RESULTS/STUDY") -> Guard:
    """Check each suggestion of ``trial`` against the study's earlier trials before Optuna
    stores it; raise :class:`SpaceChanged` at the first it cannot store (its fix names
    the study's results ``folder``).

    >>> study = optuna.create_study()
    >>> study.add_trial(optuna.trial.create_trial(
    ...     params={"act": "relu"}, distributions={"act": CategoricalDistribution(["relu"])},
    ...     value=1.0))
    >>> trial = study.ask()
    >>> checked = guard(trial)
    >>> trial.suggest_categorical("act", ["relu", "gelu"])
    Traceback (most recent call last):
    ...
    tunecb.oracle.space.SpaceChanged: study 'no-name-...': parameter 'act' was one of ['relu'] ...
    """
    study = trial.study
    earlier = recorded(study.get_trials(deepcopy=False), but=trial.number)
    found = Guard(earlier, trial.user_attrs.get(GIVEN))
    suggest = trial._suggest  # every suggest_* of optuna.Trial goes through it

    def checked(name: str, distribution: BaseDistribution) -> Any:
        before = found.earlier.get(name)
        if before is not None:
            error = conflict(name, before, distribution, study.study_name, folder)
            if error is not None:
                raise error
        if found.given is not None and name in found.given["params"]:
            wrong = problem(name, found.given["params"][name], distribution)
            if wrong and not found.given.get("warm"):
                raise GivenInvalid(f"{found.given['from']}: {wrong}; fix the value or remove it")
            if wrong:  # an earlier study's best (--warm-start-enqueue): sampled instead
                found.dropped.append(f"{wrong}: sampled instead")
                trial._fixed_params = {k: v for k, v in trial._fixed_params.items() if k != name}
        found.asked[name] = distribution
        return suggest(name, distribution)

    trial._suggest = checked  # type: ignore[method-assign]
    return found


def check_given(found: Guard) -> None:
    """After the build: refuse a given configuration with a parameter the builder never
    asked for it (a typo, or a parameter of another study); an earlier study's best
    (``--warm-start-enqueue``) only loses it."""
    if found.given is None:
        return
    never = sorted(set(found.given["params"]) - set(found.asked))
    if never and found.given.get("warm"):
        found.dropped += [f"{name} is not asked now: left out" for name in never]
    elif never:
        raise GivenInvalid(
            f"{found.given['from']}: the builder never asks {', '.join(never)} (it asks "
            f"{', '.join(found.asked) or 'nothing'}); fix the names or remove them"
        )


def notice(
    study: optuna.Study, found: Guard, study_sha: str, folder: str = "RESULTS/STUDY"
) -> list[str]:
    """The lines that say how the space asked now differs from the study's earlier trials,
    once per study file version (the first process to see it records that on the study);
    empty when nothing changed, when every trial ran this version of the study file (a
    conditional space asks different parameters in different trials), or it was said."""
    if not found.earlier or study.user_attrs.get(SPACE_NOTED) == study_sha:
        return []
    trials = study.get_trials(deepcopy=False)
    if all(t.user_attrs.get(TRIAL_STUDY_SHA, study_sha) == study_sha for t in trials):
        return []  # every trial ran this study file: a conditional space, not a change
    lines = diff(found.earlier, found.asked, trials)
    study.set_user_attr(SPACE_NOTED, study_sha)
    if not lines:
        return []
    return [
        f"study {study.study_name!r}: the search space differs from its earlier trials':",
        *(f"  {line}" for line in lines),
        f"  {sampler_use(study.sampler, trials, found.asked)}; to learn only from the "
        f"trials that fit, in a new study: --study-name NEW --warm-start {folder}",
    ]


def sampler_use(
    sampler: optuna.samplers.BaseSampler, trials: Iterable[Any], asked: dict[str, BaseDistribution]
) -> str:
    """How many finished ``trials`` fall outside the space ``asked``, and what the sampler
    does with them.

    >>> t = optuna.trial.create_trial(params={"x": 8}, distributions={"x": IntDistribution(0, 9)},
    ...                               value=0.0)
    >>> from tunecb.study.samplers_pruners import make_sampler
    >>> sampler_use(make_sampler("tpe", 0), [t], {"x": IntDistribution(0, 5)})
    '1 finished trial falls outside the new space; the sampler ignores it'
    >>> sampler_use(optuna.samplers.TPESampler(), [t], {"x": IntDistribution(0, 5)})[-76:]
    'still learns from it, truncated to the new range (pulling draws to its edge)'
    """
    n = sum(t.state in FINISHED and not inside(t, asked) for t in trials)
    if n == 1:
        falls, them = "1 finished trial falls", "it"
    else:
        falls, them = f"{n} finished trials fall", "them"
    text = f"{falls} outside the new space"
    if n == 0:
        return text
    if isinstance(sampler, InSpaceTPESampler):
        return f"{text}; the sampler ignores {them}"
    if isinstance(sampler, optuna.samplers.TPESampler):
        return (f"{text}; this sampler (Optuna's TPE) still learns from {them}, "
                "truncated to the new range (pulling draws to its edge)")  # fmt: skip
    return f"{text}; this sampler ({type(sampler).__name__}) may still learn from {them}"


def built(
    trial: Any, found: Guard | None, study_sha: str, folder: str, warm_start: str | None = None
) -> list[str]:
    """After the builder ran: refuse a given configuration it did not fully ask, seed a
    warm start (:func:`tunecb.oracle.warm.seed`; ``warm_start``: this process's source),
    and the texts to log (the warm start's, and the space's changes, :func:`notice`);
    nothing for an unguarded trial (``found`` ``None``: a FixedTrial)."""
    from tunecb.oracle import warm

    if found is None:
        return []
    check_given(found)
    texts = warm.seed(trial.study, found.asked, trial.number, warm_start)
    if found.dropped and found.given is not None:  # said, and kept on the trial
        trial.set_user_attr(GIVEN, {**found.given, "dropped": found.dropped})
        texts.append(f"trial {trial.number}: {found.given['from']}: {'; '.join(found.dropped)}")
    lines = notice(trial.study, found, study_sha, folder)
    return [*texts, "\n".join(lines)] if lines else texts
