"""Optuna samplers and pruners by name, set up for an epoch-based search.

The pruner's resource is the epoch: trials report once per epoch (step 1 is the first
epoch) and Hyperband's maximum resource is the study's epoch budget.

>>> from tunecb.study.samplers_pruners import make_pruner
>>> make_pruner("hyperband", epochs=27)._max_resource
27
>>> make_pruner("successive_halving", epochs=30)._min_resource
3
>>> make_pruner("hyperband", epochs=30)._min_resource
3
>>> make_pruner("promotion", epochs=30).rungs
(3, 9, 27)
"""

from __future__ import annotations

import secrets
import warnings
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.samplers._lazy_random_state import LazyRandomState

from tunecb.errors import ConfigError
from tunecb.study.promotion import PromotionPruner
from tunecb.study.space_sampler import InSpaceTPESampler

Constraints = Callable[[optuna.trial.FrozenTrial], Sequence[float]]


def make_sampler(
    name_or_sampler: Any, seed: int | None, constraints: Constraints | None = None
) -> optuna.samplers.BaseSampler:
    """An Optuna sampler from a name (seeded with ``seed``), or the instance itself.

    ``constraints``: when the study states constraints on its models, the function that
    reads a finished trial's violation (:func:`tunecb.oracle.attempts.constraints_func`);
    the samplers that can (``tpe``, ``nsgaii``) learn from it to avoid infeasible
    regions.

    >>> make_sampler("tpe", 0)._group, make_sampler("tpe", 0, len)._constraints_func
    (True, <built-in function len>)
    """
    if not isinstance(name_or_sampler, str):
        return name_or_sampler
    name = name_or_sampler
    extra = {"constraints_func": constraints} if constraints else {}
    # "experimental" (multivariate and group since Optuna 2.2; constraints_func until 4)
    # and "deprecated, use Trial.set_constraint" (constraints_func, Optuna 5; Optuna 4 has
    # no set_constraint, and its TPE reads constraints only through constraints_func).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        if name == "tpe":
            # Parallel-aware: running trials count as "lies" at their worst, so workers
            # asking at once spread out instead of proposing near-duplicates. With one
            # trial at a time nothing else is running, and it samples exactly as without
            # (Optuna 5's default; set here for Optuna 4). Multivariate: the joint density
            # of the parameters, which in a network interact (the learning rate with the
            # width, dropout with depth); it matched or beat the independent TPE in
            # benchmarks/search.py. Grouped: a space whose parameters depend on others
            # (units per layer of a sampled number of layers) is split into the subspaces
            # that trials share, each sampled jointly; without it, every parameter outside
            # the intersection of all trials' spaces was sampled alone. In space: trials
            # outside the ranges asked now are left out (tunecb.study.space_sampler).
            return InSpaceTPESampler(
                seed=seed, constant_liar=True, multivariate=True, group=True, **extra
            )
        if name == "nsgaii":
            return optuna.samplers.NSGAIISampler(seed=seed, **extra)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    if name == "bruteforce":
        return optuna.samplers.BruteForceSampler(seed=seed)
    if name == "gp":
        _require("torch", "torch", name)
        _require("scipy", "scipy", name)
        return optuna.samplers.GPSampler(seed=seed)
    if name == "cmaes":
        _require("cmaes", "cmaes", name)
        return optuna.samplers.CmaEsSampler(seed=seed)
    raise ConfigError(f"unknown sampler {name!r}")


_PROCESS_ENTROPY = secrets.randbits(32)  # the stream base of unseeded searches


def trial_stream_seed(seed: int | None, number: int) -> int:
    """The seed of trial ``number``'s draws: fixed by the study seed and the trial number,
    so a seeded search reproduces, and no two trials (a rerun, another worker, another
    machine) replay one stream. Unseeded: this process's entropy and the number.

    >>> trial_stream_seed(0, 5) == trial_stream_seed(0, 5) != trial_stream_seed(0, 6)
    True
    """
    base = _PROCESS_ENTROPY if seed is None else seed
    return int(np.random.SeedSequence([base, number, 0x7C8]).generate_state(1)[0])


def reseed(sampler: optuna.samplers.BaseSampler, seed: int | None, number: int) -> None:
    """Reseed every random state of ``sampler`` (and of the samplers it holds, e.g. TPE's
    start-up random sampler) for trial ``number``: call it after ``study.ask()`` and before
    the first ``suggest_*`` (Optuna samples, even relative parameters, lazily).

    Workers seeded alike used to propose the same parameters, and a rerun of a seeded study
    replayed its first run's; a stream per trial number has neither fault.

    >>> a, b = optuna.samplers.RandomSampler(seed=1), optuna.samplers.RandomSampler(seed=1)
    >>> reseed(a, 0, 3); reseed(b, 0, 4)
    >>> a._rng.rng.rand() != b._rng.rng.rand()
    True
    """
    stream = trial_stream_seed(seed, number)
    for path, owner, name, value in _random_states(sampler, "sampler", set()):
        derived = (stream + zlib.crc32(path.encode())) % 2**32
        if isinstance(value, LazyRandomState):
            value._rng = np.random.RandomState(derived)
        elif isinstance(value, np.random.RandomState):
            value.seed(derived)
        else:  # np.random.Generator
            setattr(owner, name, np.random.default_rng(derived))


def _random_states(obj: Any, path: str, seen: set[int]) -> list[tuple[str, Any, str, Any]]:
    """``(path, owner, attribute, state)`` for the random states in a sampler's tree."""
    if id(obj) in seen or not hasattr(obj, "__dict__"):
        return []
    seen.add(id(obj))
    found = []
    for name, value in vars(obj).items():
        where = f"{path}.{name}"
        if isinstance(value, LazyRandomState | np.random.RandomState | np.random.Generator):
            found.append((where, obj, name, value))
        elif isinstance(value, optuna.samplers.BaseSampler):
            found.extend(_random_states(value, where, seen))
    return found


def make_pruner(name_or_pruner: Any, epochs: int) -> optuna.pruners.BasePruner:
    """An Optuna pruner whose resource is the epoch and whose maximum is ``epochs``."""
    if not isinstance(name_or_pruner, str):
        return name_or_pruner
    name = name_or_pruner
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=max(1, epochs // 5))
    if name == "successive_halving":
        # Asynchronous successive halving (Ray Tune's ASHA rule), one bracket: TPE learns
        # from every trial, where Hyperband splits them between brackets. Rungs at a tenth,
        # three tenths and nine tenths of the budget, as Hyperband's first: rungs from
        # epoch 1 (a twenty-seventh) lost on diabetes in benchmarks/search.py at 20 x 30
        # (median 0.4898 against 0.4843), and never reached the hand loop's best there.
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=hyperband_min_resource(epochs), reduction_factor=3
        )
    if name == "hyperband":
        # The first rung at a tenth of the budget, not at epoch 1: the first epoch's value is
        # the noisiest of a fit (warm-up, a learning rate still far from its best), and
        # pruning on it lost good trials in benchmarks/search.py.
        return optuna.pruners.HyperbandPruner(
            min_resource=hyperband_min_resource(epochs), max_resource=epochs, reduction_factor=3
        )
    if name == "promotion":
        # Pause-and-resume successive halving (tunecb.study.promotion), rungs as Hyperband's.
        return PromotionPruner(hyperband_min_resource(epochs), epochs, reduction_factor=3)
    if name in ("none", "pareto"):  # pareto: tunecb.training.pareto_pruning judges, not Optuna
        return optuna.pruners.NopPruner()
    raise ConfigError(f"unknown pruner {name!r}")


def hyperband_min_resource(epochs: int) -> int:
    """The epoch of Hyperband's first rung: a tenth of the budget, at least 1.

    >>> hyperband_min_resource(20), hyperband_min_resource(5), hyperband_min_resource(100)
    (2, 1, 10)
    """
    return max(1, epochs // 10)


def _require(module: str, package: str, sampler: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"--sampler {sampler!r} needs the package {package!r}: pip install {package}, "
            "or use 'tpe' or 'random'"
        )


def first_stop(pruner: Any, done: int = 0) -> int | None:
    """The first epoch after ``done`` at whose end ``pruner`` may stop (or pause) a trial;
    ``None`` when it never does. For a pruner it does not know: the next epoch.

    >>> first_stop(make_pruner("median", epochs=30)), first_stop(make_pruner("none", 30))
    (6, None)
    >>> first_stop(make_pruner("hyperband", epochs=30), done=3)  # rungs 3, 9, 27
    9
    >>> first_stop(optuna.pruners.ThresholdPruner(lower=0.0), done=4)
    5
    """
    if isinstance(pruner, optuna.pruners.NopPruner):
        return None
    if isinstance(pruner, optuna.pruners.PercentilePruner):  # the median pruner too
        return max(int(pruner._n_warmup_steps), done + 1)
    if isinstance(pruner, PromotionPruner):
        return next((r for r in pruner.rungs if r > done), None)
    first = None
    if isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner):
        first = pruner._min_resource, pruner._reduction_factor, pruner._min_early_stopping_rate
    elif isinstance(pruner, optuna.pruners.HyperbandPruner):
        first = pruner._min_resource, pruner._reduction_factor, 0
    if first is None or not isinstance(first[0], int):  # unknown, or "auto": from epoch 1
        return done + 1
    minimum, eta, rate = first
    rung = minimum * eta**rate
    while rung <= done:
        rung *= eta
    return rung
