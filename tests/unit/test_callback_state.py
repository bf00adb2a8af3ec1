"""Every stateful callback of a trial round-trips its state: fed some epochs through its
hooks, paused (``get_state``, through strict JSON) and resumed in a fresh instance
(``set_state``), it decides the next epochs exactly as the one never interrupted; a fresh
instance without the state decides otherwise (so each case can fail). Tiny real models,
logs given by hand: no fit."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import keras
import pytest

from tunecb.study import schedules
from tunecb.training.best_checkpoint import BestCheckpoint
from tunecb.training.callbacks import (
    EpochWatch,
    HistoryLog,
    OptunaPruning,
    TrialCallbacks,
)
from tunecb.training.keras_state import TrialEarlyStopping, TrialReduceLROnPlateau
from tunecb.training.monitor import Monitor
from tunecb.training.rates import EpochLRSchedule
from tunecb.training.state import Stateful


def tiny_model(lr: float = 0.1) -> keras.Model:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="mse")
    return model


def lr_of(model: keras.Model) -> float:
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def losses(*values: float) -> list[dict[str, float]]:
    return [{"loss": 1.0, "val_loss": v} for v in values]


def run(cb: keras.callbacks.Callback, logs: list[dict], start: int) -> None:
    for epoch, row in enumerate(logs, start):
        if cb.model.stop_training:
            break
        cb.on_epoch_begin(epoch)
        cb.on_epoch_end(epoch, dict(row))


def started(cb: keras.callbacks.Callback, lr: float = 0.1) -> keras.callbacks.Callback:
    cb.set_model(tiny_model(lr))
    cb.model.stop_training = False
    cb.on_train_begin()
    return cb


def outcome(cb: keras.callbacks.Callback, folder: Path) -> tuple:
    """What the callback decided: its state (but where its file lies), whether it stopped
    training, the learning rate it left, and the text files it wrote."""
    state = {k: v for k, v in cb.get_state().items() if k != "file"}
    texts = {p.name: p.read_text() for p in sorted(folder.iterdir()) if p.suffix == ".csv"}
    return state, cb.model.stop_training, lr_of(cb.model), texts


# name: (make(folder), epochs before the pause, epochs after it, files carried over)
CASES: dict[str, tuple[Callable[[Path], keras.callbacks.Callback], list, list, tuple]] = {
    "watch": (lambda d: EpochWatch("val_loss"), losses(3, 2, 1), losses(float("nan")), ()),
    "checkpoint": (
        lambda d: BestCheckpoint(d / "best.keras", "val_loss", maximize=False),
        losses(3, 1, 2), losses(1.5, 1.2), ("best.keras",),
    ),
    "history": (lambda d: HistoryLog(d / "history.csv"), losses(3, 2), losses(1), ("history.csv",)),
    "lr_schedule": (
        lambda d: EpochLRSchedule(schedules.Cosine(min_ratio=0.1), epochs=6),
        losses(3, 2, 1), losses(1, 1), (),
    ),
    "early_stopping": (
        lambda d: TrialEarlyStopping(d / "best.keras", monitor="val_loss", mode="min",
                                     patience=3, restore_best_weights=False),
        losses(2, 1, 1.5, 1.5), losses(1.2), (),
    ),
    "plateau": (
        lambda d: TrialReduceLROnPlateau(monitor="val_loss", mode="min", factor=0.5,
                                         patience=2, cooldown=2),
        losses(2, 1, 1.5, 1.5, 1.5), losses(1.4, 1.3), (),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_a_callback_resumed_from_its_state_decides_the_next_epochs_as_if_never_paused(
    name, tmp_path
):
    make, before, after, files = CASES[name]
    first, second, fresh = (tmp_path / part for part in ("first", "second", "fresh"))
    for folder in (first, second, fresh):
        folder.mkdir()
    a = started(make(first))
    run(a, before, 0)
    saved = json.loads(json.dumps(a.get_state(), allow_nan=False))  # strict JSON
    for file in files:  # the trial's files are carried over with the backup
        if (first / file).exists():
            shutil.copy2(first / file, second / file)
            shutil.copy2(first / file, fresh / file)
    b = started(make(second), lr=lr_of(a.model))  # the optimizer's rate comes with the weights
    b.set_state(saved)
    c = started(make(fresh), lr=lr_of(a.model))
    assert isinstance(b, Stateful)
    for cb in (a, b, c):
        run(cb, after, len(before))
    assert outcome(b, second) == outcome(a, first)
    assert outcome(c, fresh) != outcome(a, first)  # without the state it goes otherwise


def test_a_best_is_put_back_only_with_the_file_it_describes(tmp_path):
    a = started(BestCheckpoint(tmp_path / "a" / "best.keras", "val_loss", maximize=False))
    run(a, losses(2, 1), 0)
    b = started(BestCheckpoint(tmp_path / "b" / "best.keras", "val_loss", maximize=False))
    b.set_state(a.get_state())  # b's folder has no such file: the best is found anew
    assert (b.best, b.best_epoch) == (None, None)
    (tmp_path / "b").mkdir()
    shutil.copy2(a.path, b.path)
    b.set_state(a.get_state())
    assert (b.best, b.best_epoch) == (1.0, 2)


def test_a_lazy_best_keeps_its_epochs_values_while_training_changes_the_model(tmp_path):
    """The copy a new best keeps in memory (written at the end) is its own: training that
    updates the variables in place afterwards changes neither it nor the file."""
    cb = started(BestCheckpoint(tmp_path / "best.keras", "val_loss", maximize=False))
    kernel = cb.model.layers[0].kernel
    kernel.assign(keras.ops.ones(kernel.shape))
    run(cb, losses(1.0), 0)  # epoch 1 is the best: copied, not written
    assert not cb.path.exists()
    kernel.assign_add(keras.ops.ones(kernel.shape))  # what later epochs do, in place
    run(cb, losses(2.0), 1)
    cb.on_train_end()
    saved = keras.saving.load_model(cb.path, compile=False).layers[0].kernel
    assert keras.ops.convert_to_numpy(saved).tolist() == [[1.0], [1.0]]
    assert keras.ops.convert_to_numpy(kernel).tolist() == [[2.0], [2.0]]  # put back


def test_the_trials_stateful_callbacks_are_named_by_kind(tmp_path):
    base = dict(watch=EpochWatch("loss"), checkpoint=BestCheckpoint(tmp_path, "loss", False),
                history=HistoryLog(tmp_path / "h"), pruning=OptunaPruning(None, "x"))  # fmt: skip
    plateau = TrialCallbacks(**base, schedule=TrialReduceLROnPlateau(monitor="loss"))
    cosine = TrialCallbacks(**base, schedule=EpochLRSchedule(schedules.Cosine(), 5))
    assert sorted(plateau.stateful()) == ["checkpoint", "history", "plateau", "watch"]
    assert sorted(cosine.stateful()) == ["checkpoint", "history", "lr_schedule", "watch"]


@pytest.mark.parametrize(
    ("logs", "value", "usable"),
    [({"val_loss": 0.5, "loss": 1.0}, 0.5, 0.5), ({"val_loss": 0.5, "loss": float("nan")}, 0.5,
     None), ({"val_loss": float("inf")}, None, None), ({}, None, None),
     ({"val_loss": "x"}, None, None), (None, None, None)],
)  # fmt: skip
def test_the_monitor_reads_only_finite_values(logs, value, usable):
    monitor = Monitor("val_loss")
    assert (monitor.value(logs), monitor.usable(logs)) == (value, usable)


def test_the_monitor_compares_in_its_direction():
    up, down = Monitor("acc", maximize=True), Monitor("loss")
    assert up.improves(0.9, 0.8) and not up.improves(0.8, 0.8) and not up.improves(0.7, 0.8)
    assert down.improves(0.7, 0.8) and not down.improves(0.8, 0.8) and down.improves(9, None)


def test_a_backup_written_before_the_state_protocol_is_still_resumed(tmp_path):
    import optuna

    from tunecb.study.settings import resolve
    from tunecb.training.backup import callback_states
    from tunecb.training.best_checkpoint import file_identity
    from tunecb.training.callbacks import make_callbacks
    from tunecb.training.state import collect_states, restore_states

    s = resolve({"monitor": "val_loss", "patience": 3, "lr_schedule": "plateau"}, {"epochs": 9},
                default_name="t")  # fmt: skip

    def callbacks() -> TrialCallbacks:
        cbs = make_callbacks(optuna.trial.FixedTrial({}, 0), s, s.lr_schedule,
                             tmp_path / "best.keras", tmp_path / "history.csv")  # fmt: skip
        for cb in cbs.stateful().values():
            started(cb)
        return cbs

    paused = callbacks()
    for cb in paused.stateful().values():
        run(cb, losses(2, 1, 1.5, 1.5), 0)
    es, plateau, ckpt = paused.early_stopping, paused.schedule, paused.checkpoint
    now = collect_states(paused.stateful())
    before = {  # state.json and checkpoint.json as tunecb wrote them before get_state
        "epochs_run": 4,
        "early_stopping": {"wait": es.wait, "best": es.best, "best_epoch": es.best_epoch},
        "plateau": {"wait": plateau.wait, "best": plateau.best,
                    "cooldown_counter": plateau.cooldown_counter},
    }  # fmt: skip
    record = {"best": ckpt.best, "best_epoch": ckpt.best_epoch, "attempt": 0,
              "file": file_identity(ckpt.path)}  # fmt: skip
    for state, checkpoint in (({"format": 2, "callbacks": now}, None),
                              ({"callbacks": before}, record)):  # fmt: skip
        resumed = callbacks()
        restore_states(resumed.stateful(), callback_states(state, checkpoint))
        assert collect_states(resumed.stateful()) == now
