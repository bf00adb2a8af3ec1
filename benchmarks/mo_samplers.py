"""The default sampler of a multi-objective study: tunecb's TPE (multivariate, grouped,
constant liar) against NSGA-II and random search on two synthetic two-objective problems
(an MLP-shaped accuracy/size trade-off, and ZDT1), 30 and 60 trials, 5 seeds. No Keras: it
measures the samplers alone, in seconds. Prints the median hypervolume [min-max] and time.

    python benchmarks/mo_samplers.py
"""

from __future__ import annotations

import math
import statistics
import time
import warnings

import optuna

from tunecb.oracle.pareto import hypervolume_2d
from tunecb.study.samplers_pruners import make_sampler

SEEDS, BUDGETS, SAMPLERS = range(5), (30, 60), ("tpe", "nsgaii", "random")


def mlp_like(trial: optuna.Trial) -> tuple[float, float]:
    """A saturating accuracy against log10 of an MLP's parameter count (no noise)."""
    layers = trial.suggest_int("layers", 1, 3)
    units = trial.suggest_int("units", 8, 256, log=True)
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    dropout = trial.suggest_float("dropout", 0.0, 0.5)
    accuracy = (
        0.98
        - 0.5 / math.sqrt(layers * units)
        - 0.08 * (math.log10(lr) + 2.3) ** 2
        - 0.1 * (dropout - 0.2) ** 2
    )
    params = 64 * units + (layers - 1) * units * units + 10 * units
    return accuracy, math.log10(params)


def zdt1(trial: optuna.Trial) -> tuple[float, float]:
    """ZDT1 with 6 variables, its first objective negated (maximised)."""
    x = [trial.suggest_float(f"x{i}", 0, 1) for i in range(6)]
    g = 1 + 9 * sum(x[1:]) / 5
    return -x[0], g * (1 - math.sqrt(x[0] / g))


PROBLEMS = {"mlp_like": (mlp_like, (0.0, 6.0)), "zdt1": (zdt1, (-1.0, 10.0))}


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")
    for name, (objective, ref) in PROBLEMS.items():
        for n_trials in BUDGETS:
            cells = []
            for sampler in SAMPLERS:
                volumes, times = [], []
                for seed in SEEDS:
                    study = optuna.create_study(
                        directions=["maximize", "minimize"], sampler=make_sampler(sampler, seed)
                    )
                    start = time.perf_counter()
                    study.optimize(objective, n_trials=n_trials)
                    times.append(time.perf_counter() - start)
                    vectors = [t.values for t in study.trials]
                    volumes.append(hypervolume_2d(vectors, [True, False], ref))
                cells.append(
                    f"{sampler} {statistics.median(volumes):.4f} "
                    f"[{min(volumes):.4f}-{max(volumes):.4f}] {statistics.median(times):.1f}s"
                )
            print(f"{name:9} {n_trials:3} trials: " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
