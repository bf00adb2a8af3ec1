"""``tunecb rerun``: fit a trial again with its recorded seed, parameters and settings,
and compare every epoch with what it recorded.

On the CPU, with deterministic ops (this command turns them on), the values are identical.
Where they cannot be, it says why: the trial ran on a GPU, resumed from a backup, the study
file or the data changed, or the libraries did. Nothing of the trial is touched; the rerun
trains in a temporary folder and writes ``trials/<n>/rerun.json``.

>>> result = rerun("results/digits", 3)      # doctest: +SKIP
>>> result.identical, result.value, result.recorded   # doctest: +SKIP
(True, 0.9722, 0.9722)
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunecb.errors import ResultsError
from tunecb.oracle.attrs import INFEASIBLE, RESUMED_FROM, VERSIONS
from tunecb.replay.source import TrialSource, history_column
from tunecb.results import StudyDir, write_json
from tunecb.study.declaration import Study


@dataclass(frozen=True)
class RerunResult:
    """The rerun's value beside the recorded one, epoch by epoch."""

    trial: int
    monitor: str
    recorded: float | None
    value: float | None
    recorded_curve: list[float | None]  # the monitored value of each recorded epoch
    curve: list[float | None]  # the rerun's
    reasons: list[str] = field(default_factory=list)  # why values may differ
    duration_s: float = 0.0
    # A multi-objective trial's objectives at its result epoch: {name: [recorded, rerun]}
    objectives: dict[str, list[float | None]] | None = None

    @property
    def identical(self) -> bool:
        """Every epoch both ran gave the same value, they ran as many epochs, and (for a
        multi-objective trial) every objective came out as recorded."""
        return self.monitor_identical and not self.differing

    @property
    def monitor_identical(self) -> bool:
        """The monitored value came out as recorded at every epoch, and the result too."""
        return self.curve == self.recorded_curve and self.value == self.recorded

    @property
    def differing(self) -> dict[str, list[float | None]]:
        """The objectives whose rerun value is not the recorded one: {name: [recorded, rerun]}.

        >>> RerunResult(1, "loss", 0.5, 0.5, [0.5], [0.5],
        ...             objectives={"loss": [0.5, 0.5], "ms": [2.0, 2.5]}).differing
        {'ms': [2.0, 2.5]}
        """
        return {k: v for k, v in (self.objectives or {}).items() if v[0] != v[1]}

    @property
    def max_difference(self) -> float:
        """The largest difference of the monitored value over the epochs both ran."""
        diffs = [
            abs(a - b)
            for a, b in zip(self.curve, self.recorded_curve, strict=False)
            if a is not None and b is not None
        ]
        return max(diffs, default=0.0 if self.monitor_identical else math.inf)


def rerun(
    path: str | Path,
    trial: int | None = None,
    *,
    study: Study | str | Path | None = None,
    best_on: str | None = None,
    within: dict[str, float] | list[str] | None = None,
) -> RerunResult:
    """Fit trial number ``trial`` (default: the best) of results folder ``path`` again (see
    the module doc). ``best_on=``/``within=`` pick a multi-objective study's front member
    as :func:`tunecb.load_best` does; its other objectives are compared too."""
    source = TrialSource.open(path, trial=trial, study=study, best_on=best_on, within=within)
    trial = source.number
    if source.record["state"] not in ("COMPLETE", "PRUNED"):
        raise ResultsError(
            f"trial {trial} of {path} is {source.record['state']}; rerun a COMPLETE or PRUNED "
            "trial (tunecb report lists them)"
        )
    if source.record.get("stop_reason") == INFEASIBLE:  # nothing was trained to compare
        raise ResultsError(
            f"trial {trial} of {path} was infeasible (its model broke the study's constraints "
            "and never trained); rerun a trial that trained (tunecb report lists them)"
        )
    backend = source.start_backend(deterministic=True)
    data = source.load_data()
    reasons = list(source.notes)
    versions = source.attrs.get(VERSIONS) or {}
    if versions.get("device") == "gpu":
        reasons.append("the trial ran on a GPU, whose kernels are not all deterministic")
    resumed = source.attrs.get(RESUMED_FROM)
    if resumed:
        reasons.append(
            f"the trial resumed from a backup at epoch {resumed} (paused, or its worker "
            "stopped): a backup written before tunecb kept each epoch's data order and the "
            "dropout state drew them anew after that epoch"
        )
    monitor = source.settings.monitor
    recorded_curve = source.history(monitor)
    pruned_at = source.record.get("epochs") if source.record["state"] == "PRUNED" else None
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix=f".rerun-{trial}-", dir=source.study_dir.root))
    try:
        outcome, curve = _fit_again(source, data, scratch, pruned_at)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = RerunResult(
        trial=trial, monitor=monitor, recorded=source.record.get("value"), value=outcome.value,
        recorded_curve=recorded_curve, curve=curve, reasons=reasons,
        duration_s=round(time.perf_counter() - started, 3),
        objectives=_objectives(source.record, outcome.objectives),
    )  # fmt: skip
    write_json(
        source.study_dir.guard(source.study_dir.rerun_json(trial)),
        {
            "trial": trial, "monitor": monitor, "recorded": result.recorded,
            "value": result.value, "identical": result.identical,
            "max_difference": result.max_difference, "differing": sorted(result.differing),
            "epochs": len(curve),
            "recorded_epochs": len(recorded_curve), "state": outcome.state,
            "reasons": reasons, "backend": backend, "deterministic_ops": True,
            "duration_s": result.duration_s, "objectives": result.objectives,
            "at": time.time(),
        },
    )  # fmt: skip
    return result


def _fit_again(
    source: TrialSource, data: Any, scratch: Path, pruned_at: int | None
) -> tuple[Any, list[float | None]]:
    """Run the trial through the search's own runner, in ``scratch``; a pruned trial stops
    where the pruner stopped it."""
    import optuna

    from tunecb.training.runner import TrialRunner

    class Replayed(optuna.trial.FixedTrial):
        def should_prune(self) -> bool:  # the pruner's decision, as recorded
            return pruned_at is not None and self._last_step >= pruned_at

        def report(self, value: float, step: int) -> None:
            self._last_step = step

    replayed = Replayed(source.params, number=source.number)
    replayed._last_step = 0
    study_dir = StudyDir(scratch)
    runner = TrialRunner(source.loaded, source.settings, study_dir, data)
    outcome = runner.run(replayed, seed=source.seed)
    curve = history_column(study_dir.history(source.number), source.settings.monitor)
    return outcome, curve


def _objectives(
    record: dict[str, Any], now: dict[str, float | None] | None
) -> dict[str, list[float | None]] | None:
    """A multi-objective trial's recorded and rerun value of each objective, at its result
    epoch (a pruned trial's: at the epoch it stopped at); ``None`` for a single-objective
    trial.

    >>> _objectives({"objectives": ("acc", "params"), "acc": 0.9, "params": 9.0},
    ...             {"acc": 0.9, "params": 9.0})
    {'acc': [0.9, 0.9], 'params': [9.0, 9.0]}
    """
    names = record.get("objectives")
    if not names or now is None:
        return None
    return {name: [record.get(name), now.get(name)] for name in names}
