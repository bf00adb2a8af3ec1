"""``tunecb retrain``: the best trial's configuration fit on training + validation data, for
the epochs its best epoch implies, saved as ``trials/<n>/final.keras`` with a record.

Why the best epoch: it is where the validation score peaked, so training longer overfits;
with the validation data now in the training set nothing is left to stop early on, and
training the same number of passes over all the data is the usual rule (Chollet, *Deep
Learning with Python*, "train a final production model on all the data, with the best
parameters found"). ``epochs=`` chooses another number.

>>> final = retrain("results/digits")            # doctest: +SKIP
>>> final.path, final.epochs, final.test          # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunecb._version import __version__
from tunecb.errors import ConfigError, ResultsError
from tunecb.replay.source import TrialSource
from tunecb.results import write_json
from tunecb.study.declaration import Study

log = logging.getLogger("tunecb")


@dataclass(frozen=True)
class RetrainResult:
    """What ``retrain`` wrote: the final model's path and its record."""

    path: Path  # trials/<n>/final.keras
    trial: int
    epochs: int
    merged: bool  # trained on train + validation (False: on train only)
    rows: int | None  # training samples, when the data are arrays
    test: dict[str, float] | None  # the final model's test metrics, with a test split
    checkpoint_test: dict[str, float] | None  # the trial's best checkpoint's, for comparison
    duration_s: float
    notes: list[str] = field(default_factory=list)  # what differs since the trial ran

    def load(self) -> Any:
        """The final model, loaded with ``safe_mode=True``."""
        from tunecb.training.loading import load_model

        return load_model(self.path)


def retrain(
    path: str | Path,
    *,
    trial: int | None = None,
    rank: int | None = None,
    epochs: int | None = None,
    study: Study | str | Path | None = None,
    merge: bool = True,
    best_on: str | None = None,
    within: dict[str, float] | list[str] | None = None,
) -> RetrainResult:
    """Retrain trial ``trial`` (or the ``rank``-th best; default the best) of results folder
    ``path`` on its training + validation data (``merge=False``: training data only) for
    ``epochs`` epochs (default: its best epoch), with its seed, parameters and learning
    rates; write ``final.keras`` and ``final.json`` beside its checkpoint. ``study`` is the
    study (a :class:`Study` or a study file) when the trial's study file is not where it
    ran from. With a test split, the final model and the trial's best checkpoint are both
    evaluated on it. ``best_on=``/``within=`` pick a multi-objective study's front member
    (:func:`tunecb.replay.front_choice.choose`)."""
    if epochs is not None and (
        isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1
    ):
        raise ConfigError(f"--epochs {epochs!r}: expected a positive integer")
    source = TrialSource.open(
        path, rank=rank, trial=trial, study=study, best_on=best_on, within=within
    )
    number = source.number
    if epochs is None:
        epochs = source.record.get("best_epoch")
        if not epochs:
            raise ResultsError(
                f"trial {number} of {path} has no best epoch (state {source.record['state']}); "
                "pick a finished trial with --trial N, or give --epochs N"
            )
    backend = source.start_backend()
    data = source.load_data()
    train = data.merged() if merge else data
    rates = source.learning_rates()
    from tunecb.training import refit

    started = time.perf_counter()
    model, history = refit.fit_final(
        source.loaded, source.settings, train, source.params, number, source.seed, epochs, rates
    )
    study_dir = source.study_dir
    target = study_dir.guard(study_dir.final_model(number))
    refit.save_model(model, target)
    test = checkpoint_test = None
    if data.test is not None:
        test = refit.evaluate_on_test(model, data, source.settings.batch_size)
        checkpoint_test = _checkpoint_test(source, data)
    duration = round(time.perf_counter() - started, 3)
    from tunecb.training.trial_env import versions

    write_json(
        study_dir.guard(study_dir.final_json(number)),
        {
            "trial": number, "params": source.params, "epochs": epochs,
            "epochs_from": "best_epoch" if epochs == source.record.get("best_epoch") else "given",
            "seed": source.seed, "data": "train+validation" if merge else "train",
            "rows": train.rows("train"), "data_fingerprint": train.fingerprint(),
            "learning_rates": "replayed from the trial's history" if rates else "as compiled",
            "final_loss": (history.get("loss") or [None])[-1], "test": test,
            "batches_per_call": int(getattr(model, "steps_per_execution", 1) or 1),
            "checkpoint_test": checkpoint_test, "backend": backend, "versions": versions(),
            "study_file": str(source.loaded.path), "study_sha256": source.loaded.sha256,
            "notes": source.notes, "duration_s": duration, "at": time.time(),
            "tunecb_version": __version__,
        },
    )  # fmt: skip
    return RetrainResult(
        path=target, trial=number, epochs=epochs, merged=merge, rows=train.rows("train"),
        test=test, checkpoint_test=checkpoint_test, duration_s=duration, notes=source.notes,
    )  # fmt: skip


def _checkpoint_test(source: TrialSource, data: Any) -> dict[str, float] | None:
    """The trial's best checkpoint on the test split, also written to ``test.json``."""
    from tunecb.replay.evaluate import evaluate_checkpoint

    return evaluate_checkpoint(source.study_dir, source.number, data, source.settings.batch_size)
