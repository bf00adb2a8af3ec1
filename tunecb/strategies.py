"""Optuna samplers and pruners by name, set up for an epoch-based search.

The pruner's resource is the epoch: trials report once per epoch (step 1 is the first
epoch) and Hyperband's maximum resource is the study's epoch budget.

>>> from tunecb.strategies import make_pruner
>>> make_pruner("hyperband", epochs=27)._max_resource
27
"""

from __future__ import annotations

from typing import Any

import optuna

from tunecb.errors import ConfigError


def make_sampler(name_or_sampler: Any, seed: int | None) -> optuna.samplers.BaseSampler:
    """An Optuna sampler from a name (seeded with ``seed``), or the instance itself."""
    if not isinstance(name_or_sampler, str):
        return name_or_sampler
    name = name_or_sampler
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    if name == "nsgaii":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "bruteforce":
        return optuna.samplers.BruteForceSampler(seed=seed)
    if name == "cmaes":
        _require("cmaes", "cmaes", name)
        return optuna.samplers.CmaEsSampler(seed=seed)
    if name == "gp":
        _require("torch", "torch", name)
        _require("scipy", "scipy", name)
        return optuna.samplers.GPSampler(seed=seed)
    raise ConfigError(f"unknown sampler {name!r}")


def make_pruner(name_or_pruner: Any, epochs: int) -> optuna.pruners.BasePruner:
    """An Optuna pruner whose resource is the epoch and whose maximum is ``epochs``."""
    if not isinstance(name_or_pruner, str):
        return name_or_pruner
    name = name_or_pruner
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=max(1, epochs // 5))
    if name == "successive_halving":
        # Rungs at min_resource * 3**k: start low enough that three rungs fit the budget.
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=max(1, epochs // 27), reduction_factor=3
        )
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=epochs, reduction_factor=3
        )
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"unknown pruner {name!r}")


def _require(module: str, package: str, sampler: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"--sampler {sampler!r} needs the package {package!r}: pip install {package}, "
            "or use 'tpe' or 'random'"
        )
