"""Our Keras callbacks on a real (tiny) model and a real in-memory Optuna study."""

from __future__ import annotations

import math

import keras
import numpy as np
import optuna
import pytest
from sklearn.datasets import load_digits

from tunecb.errors import MonitorError
from tunecb.study import schedules
from tunecb.study.settings import resolve
from tunecb.training.callbacks import EpochLRSchedule, make_callbacks


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    x = (x[:500] / 16.0).astype("float32")
    return (x[:400], y[:400]), (x[400:], y[400:500])


def model(lr=0.01, nan=False):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((64,)), keras.layers.Dense(16, activation="relu")]
    if nan:
        layers.append(keras.layers.Rescaling(float("nan")))
    m = keras.Sequential([*layers, keras.layers.Dense(10, activation="softmax")])
    m.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])  # fmt: skip
    return m


def callbacks_for(tmp_path, pruner=None, schedule="none", **settings):
    study = optuna.create_study(direction="maximize", pruner=pruner or optuna.pruners.NopPruner())
    trial = study.ask()
    s = resolve({"monitor": "val_accuracy", "epochs": 8, **settings}, {}, default_name="t")
    cbs = make_callbacks(
        trial, s, schedules.parse_schedule(schedule), tmp_path / "best.keras",
        tmp_path / "history.csv",
    )  # fmt: skip
    return cbs, s


def fit(m, cbs, data, epochs=8):
    (x, y), val = data
    return m.fit(x, y, validation_data=val, epochs=epochs, batch_size=64, verbose=0,
                 callbacks=cbs.as_list())  # fmt: skip


def test_checkpoint_holds_the_best_epoch_and_evaluates_to_the_recorded_value(tmp_path, digits):
    cbs, _ = callbacks_for(tmp_path, patience=None)
    history = fit(model(lr=0.05), cbs, digits)
    values = history.history["val_accuracy"]
    assert cbs.checkpoint.best == pytest.approx(max(values))
    assert cbs.checkpoint.best_epoch == values.index(max(values)) + 1
    loaded = keras.saving.load_model(tmp_path / "best.keras", safe_mode=True)
    (_, _), (xv, yv) = digits
    result = loaded.evaluate(xv, yv, batch_size=64, verbose=0, return_dict=True)
    assert result["accuracy"] == pytest.approx(cbs.checkpoint.best, abs=1e-6)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_early_stopping_stops_and_restores_the_best_weights(tmp_path, digits):
    # Any min_delta above 1.0 means no epoch after the first improves: stop after 2 epochs
    # and restore epoch 1's weights, which the checkpoint also holds.
    cbs, _ = callbacks_for(tmp_path, patience=1, min_delta=1.0)
    m = model(lr=0.05)
    history = fit(m, cbs, digits)
    assert len(history.history["loss"]) == 2
    assert cbs.stop_reason(epochs=8) == "early_stopped"
    (_, _), (xv, yv) = digits
    restored = m.evaluate(xv, yv, batch_size=64, verbose=0, return_dict=True)["accuracy"]
    assert restored == pytest.approx(history.history["val_accuracy"][0], abs=1e-6)


def test_pruning_stops_fit_without_raising_so_every_on_train_end_runs(tmp_path, digits):
    pruner = optuna.pruners.ThresholdPruner(lower=0.999, n_warmup_steps=3)
    cbs, _ = callbacks_for(tmp_path, pruner=pruner, patience=10)
    m = model()
    history = fit(m, cbs, digits)  # returns normally: nothing raised inside fit
    assert len(history.history["loss"]) == 3 and cbs.pruning.pruned_at == 3
    assert cbs.stop_reason(epochs=8) == "pruned"
    assert cbs.pruning.trial.storage.get_trial(cbs.pruning.trial._trial_id).intermediate_values \
        == pytest.approx(dict(enumerate(history.history["val_accuracy"], 1)))  # fmt: skip
    assert cbs.early_stopping.best_weights is not None  # its on_train_end restored these
    assert (tmp_path / "history.csv").read_text().count("\n") == 4  # header + 3 epochs


def test_non_finite_loss_stops_at_that_epoch_and_is_never_a_best_checkpoint(tmp_path, digits):
    cbs, _ = callbacks_for(tmp_path, patience=3)
    history = fit(model(nan=True), cbs, digits)
    assert len(history.history["loss"]) == 1 and math.isnan(history.history["loss"][0])
    assert cbs.stop_reason(epochs=8) == "nan"
    assert cbs.checkpoint.best is None and not (tmp_path / "best.keras").exists()


def test_a_missing_monitor_fails_at_the_first_epoch_naming_the_real_metrics(tmp_path, digits):
    cbs, _ = callbacks_for(tmp_path, monitor="val_acc")
    m = model()
    with pytest.raises(MonitorError) as err:
        fit(m, cbs, digits)
    assert "'val_acc'" in str(err.value) and "Did you mean 'val_accuracy'" in str(err.value)
    assert "['accuracy', 'loss', 'val_accuracy', 'val_loss']" in str(err.value)
    assert int(m.optimizer.iterations.numpy()) == 7  # one epoch of 400/64 batches, no more


def test_cosine_and_step_schedules_follow_the_epoch_budget():
    cosine = EpochLRSchedule(schedules.Cosine(min_ratio=0.1), epochs=11)
    cosine.base_lr = 1.0
    rates = [cosine.rate(e) for e in range(11)]
    # Decays over the whole budget: the last epoch still trains, at a rate above the floor.
    assert rates[0] == 1.0 and rates[10] == pytest.approx(
        0.1 + 0.45 * (1 + math.cos(math.pi * 10 / 11))
    )
    assert rates == sorted(rates, reverse=True) and min(rates) > 0.1
    assert cosine.rate(11) == pytest.approx(0.1)
    warm = EpochLRSchedule(schedules.Cosine(warmup_epochs=2), epochs=10)
    warm.base_lr = 1.0
    assert [warm.rate(0), warm.rate(1), warm.rate(2)] == [0.5, 1.0, 1.0]
    step = EpochLRSchedule(schedules.StepDecay(every=2, factor=0.5), epochs=10)
    step.base_lr = 0.8
    assert [step.rate(e) for e in range(5)] == [0.8, 0.8, 0.4, 0.4, 0.2]


def test_plateau_schedule_lowers_the_rate_and_the_history_logs_it(tmp_path, digits):
    cbs, _ = callbacks_for(tmp_path, patience=None, min_delta=0.0,
                           schedule=schedules.ReduceOnPlateau(factor=0.5, patience=0))  # fmt: skip
    fit(model(lr=1e-7), cbs, digits, epochs=6)  # too slow to improve: a plateau at once
    rows = (tmp_path / "history.csv").read_text().splitlines()
    header = rows[0].split(",")
    rates = [float(r.split(",")[header.index("learning_rate")]) for r in rows[1:]]
    assert rates[0] == pytest.approx(1e-7) and min(rates) < 0.5e-7
    assert np.all(np.diff(rates) <= 0)


def test_schedule_refuses_a_model_compiled_with_a_keras_schedule(tmp_path, digits):
    cbs, _ = callbacks_for(tmp_path, schedule="cosine")
    m = model()
    m.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(
        0.01, 10, 0.9)), loss="sparse_categorical_crossentropy", metrics=["accuracy"])  # fmt: skip
    with pytest.raises(Exception, match="keep one of the two"):
        fit(m, cbs, digits)


@pytest.mark.slow
def test_a_process_killed_while_writing_the_checkpoint_leaves_the_previous_one_loadable(
    tmp_path,
):
    import contextlib
    import os
    import signal
    import subprocess
    import sys
    import time

    # One interpreter imports Keras once and forks a saver per attempt (as tunecb's zygote
    # forks workers): each saver is a process of its own, SIGKILLed mid-save, without a
    # TensorFlow import of its own (~7 CPU s each).
    script = tmp_path / "saver.py"
    script.write_text(
        "import os, sys, keras\n"
        "from pathlib import Path\n"
        "from tunecb.results import atomic_write\n"
        "target = Path(sys.argv[1])\n"
        "while sys.stdin.readline():  # one line: one saver process\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        m = keras.Sequential([keras.Input((512,)), keras.layers.Dense(1024),"
        " keras.layers.Dense(1024)])\n"
        "        m.compile(optimizer='adam', loss='mse')\n"
        "        m.optimizer.build(m.trainable_variables)\n"
        "        atomic_write(target, lambda tmp: m.save(tmp), suffix='.keras')\n"
        "        print('saved', os.getpid(), flush=True)\n"
        "        while True:\n"
        "            atomic_write(target, lambda tmp: m.save(tmp), suffix='.keras')\n"
        "    os.waitpid(pid, 0)  # until the test kills it\n"
        "    print('gone', flush=True)\n"
    )
    target = tmp_path / "best.keras"
    forks = subprocess.Popen([sys.executable, str(script), str(target)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    saver = None
    try:
        for attempt in range(4):
            forks.stdin.write("save\n")
            forks.stdin.flush()
            said, pid = forks.stdout.readline().split()
            assert said == "saved"
            saver = int(pid)
            time.sleep(0.05 + 0.13 * attempt)  # somewhere in the middle of a later save
            os.kill(saver, signal.SIGKILL)
            assert forks.stdout.readline().strip() == "gone"
            saver = None
            model = keras.saving.load_model(target, safe_mode=True)
            assert model.count_params() == 512 * 1024 + 1024 + 1024 * 1024 + 1024
    finally:
        if saver is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(saver, signal.SIGKILL)
        forks.kill()
        forks.wait()


def test_a_backup_resumes_only_the_same_parameters_with_every_callback_state(tmp_path, digits):
    from tunecb.results import StudyDir
    from tunecb.training.backup import TrialBackup, fingerprint, restore

    study = StudyDir(tmp_path)
    folder = study.backup_dir(0)
    stamp = fingerprint({"lr": 0.05}, "sha", 8)
    cbs, _ = callbacks_for(study.trial_dir(0), patience=3, schedule="cosine")
    study.trial_dir(0).mkdir(parents=True)
    cbs.backup = TrialBackup(study.backup(0), stamp, attempt=0, cbs=cbs, every=0)
    first = model(lr=0.05)
    fit(first, cbs, digits, epochs=3)  # 3 of 8 epochs, then the "worker dies"
    saved_es = (cbs.early_stopping.wait, cbs.early_stopping.best)

    # Other parameters (or another study file, or budget): no resume, stale backup removed.
    other, _ = callbacks_for(study.trial_dir(1), patience=3, schedule="cosine")
    other.backup = TrialBackup(folder, fingerprint({"lr": 0.01}, "sha", 8), 1, other, 0)
    assert restore(model(), other.backup, study, 1, other.pruning.trial, "val_accuracy") == 0
    assert not folder.exists()

    # Same parameters: weights, optimizer, epoch and our callbacks' state come back.
    cbs.backup.save(3)
    again, _ = callbacks_for(study.trial_dir(2), patience=3, schedule="cosine")
    again.backup = TrialBackup(folder, stamp, 2, again, 0)
    second = model(lr=0.05)
    done = restore(second, again.backup, study, 2, again.pruning.trial, "val_accuracy")
    assert done == 3
    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights(),
                                                     strict=True))  # fmt: skip
    assert int(second.optimizer.iterations.numpy()) == int(first.optimizer.iterations.numpy())
    (x, y), val = digits
    history = second.fit(x, y, validation_data=val, epochs=8, initial_epoch=done, batch_size=64,
                         verbose=0, callbacks=again.as_list())  # fmt: skip
    ran = len(history.history["loss"])
    assert 1 <= ran <= 5 and again.watch.epochs_run == 3 + ran
    assert again.schedule.base_lr == pytest.approx(0.05)  # not the rate decayed by epoch 3
    assert again.early_stopping.best >= saved_es[1]  # the best of epochs 1-3 was carried over
    rows = study.history(2).read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, 3 + ran + 1))


@pytest.mark.parametrize(
    ("schedule", "kept"), [("plateau", False), ("cosine", False), ("plateau", True)],
    ids=["plateau", "cosine", "plateau-from-memory"],
)  # fmt: skip
def test_a_trial_paused_and_resumed_trains_the_same_epochs_as_one_never_paused(
    tmp_path, digits, schedule, kept
):
    """Weights, optimizer and every callback's state come back exactly: the epochs after
    the pause log the same values, rates and decisions (fixed batch order: no shuffle).
    ``kept``: the paused model itself goes on, as its worker kept it in memory (Keras'
    session cleared meanwhile, its variables put back from the copy taken at the pause)."""
    from tunecb.results import StudyDir
    from tunecb.training import variables
    from tunecb.training.backup import TrialBackup, fingerprint, restore
    from tunecb.training.trial_env import clear_session

    (x, y), val = digits
    study = StudyDir(tmp_path)
    plateau = schedules.ReduceOnPlateau(factor=0.5, patience=1) if schedule == "plateau" else None

    def trial(number: int):
        cbs, _ = callbacks_for(study.trial_dir(number), patience=2, min_delta=0.01,
                               schedule=plateau or schedule)  # fmt: skip
        study.trial_dir(number).mkdir(parents=True)
        cbs.backup = TrialBackup(study.backup(number), fingerprint({}, "s", 8), number, cbs, 0)
        return cbs

    def train(m, cbs, start, stop):
        m.fit(x, y, validation_data=val, epochs=stop, initial_epoch=start, batch_size=64,
              shuffle=False, verbose=0, callbacks=cbs.as_list())  # fmt: skip

    whole = trial(0)
    train(model(lr=0.05), whole, 0, 8)
    paused = trial(1)
    at_pause: list = []  # what the runner copies when the pruner pauses (before train end)

    def pause(epoch: int, logs: dict) -> None:
        if epoch == 2:
            m = paused.watch.model
            at_pause[:] = [variables.snapshot(m), paused.early_stopping.best_weights]

    paused.user.append(keras.callbacks.LambdaCallback(on_epoch_end=pause))
    first = model(lr=0.05)
    train(first, paused, 0, 3)  # the pause: its backup is at epoch 3
    resumed = trial(2)
    resumed.backup = TrialBackup(study.backup(1), fingerprint({}, "s", 8), 2, resumed, 0)
    m, put = model(lr=0.05), None
    if kept:  # the train end may change the weights (early stopping's restore, a user's
        for variable in first.weights:  # callback): the copy taken at the pause goes back
            variable.assign(np.zeros(variable.shape, variable.dtype))
        clear_session()
        m, values = first, at_pause[0]
        put = lambda again: variables.put_back(again, values)  # noqa: E731
        resumed.early_stopping.kept_best_weights = at_pause[1]
    assert restore(m, resumed.backup, study, 2, resumed.pruning.trial, "val_accuracy",
                   put_back=put) == 3  # fmt: skip
    train(m, resumed, 3, 8)

    def rows(number):
        return [r.split(",")[1:] for r in study.history(number).read_text().splitlines()]

    assert rows(2) == rows(0)  # every logged value and rate, epoch by epoch
    assert resumed.stop_reason(8) == whole.stop_reason(8)
    assert (resumed.checkpoint.best, resumed.checkpoint.best_epoch) == (
        whole.checkpoint.best, whole.checkpoint.best_epoch)  # fmt: skip
    assert resumed.early_stopping.get_state() == whole.early_stopping.get_state()
    assert resumed.schedule.get_state() == whole.schedule.get_state()


def test_the_best_checkpoint_is_written_once_a_fit_and_holds_the_best_epoch_exactly(
    tmp_path, digits
):
    """Lazy: a new best is a copy in memory; the file is written when the fit ends, with the
    weights and optimizer state of the best epoch (the same as a file written at once)."""
    seen: dict[int, list] = {}

    class Snap(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen[epoch + 1] = [v.numpy().copy() for v in self.model.variables] + [
                int(self.model.optimizer.iterations.numpy())]  # fmt: skip

    cbs, _ = callbacks_for(tmp_path, patience=None)
    writes = []
    write = cbs.checkpoint._write
    cbs.checkpoint._write = lambda: (writes.append(1), write())
    m = model(lr=0.1)  # its best epoch is the 4th of 8 (0.55, 0.67, 0.70, 0.80, 0.78, ...)
    (x, y), val = digits
    history = m.fit(x, y, validation_data=val, epochs=8, batch_size=64, verbose=0,
                    callbacks=[*cbs.as_list(), Snap()])  # fmt: skip
    values = history.history["val_accuracy"]
    improvements = sum(v > max(values[:i], default=-1) for i, v in enumerate(values))
    assert improvements >= 3 and len(writes) == 1
    best = cbs.checkpoint.best_epoch
    assert best < 8  # the file is not the last epoch's model: the copy was put back
    loaded = keras.saving.load_model(tmp_path / "best.keras")
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(seen[best][:-1], loaded.variables,
                                                             strict=True))  # fmt: skip
    assert int(loaded.optimizer.iterations.numpy()) == seen[best][-1]
    now = zip(seen[8][:-1], m.variables, strict=True)  # the fit goes on from its last epoch
    assert all(np.array_equal(a, b.numpy()) for a, b in now)


def test_a_trial_killed_between_backups_resumes_to_the_same_best_as_one_never_killed(
    tmp_path, digits
):
    """The lazy best is written with every backup: a trial killed after epoch 5, whose last
    backup is at epoch 3, finds the best of epochs 1-3 in its file and ends as if never
    killed (the same rows, best epoch, and checkpoint weights)."""
    from tunecb.results import StudyDir, read_history, read_json
    from tunecb.training.backup import TrialBackup, fingerprint, restore
    from tunecb.training.best_checkpoint import file_identity

    (x, y), val = digits
    study = StudyDir(tmp_path)

    class Killed(Exception):
        pass

    class KillAt(keras.callbacks.Callback):
        def __init__(self, cbs):
            super().__init__()
            self.cbs = cbs

        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == 3:
                self.cbs.backup.save(3)  # the last backup before the kill
            if epoch + 1 == 5:
                raise Killed  # no on_train_end: as a SIGKILL, nothing more is written

    def trial(number, kill=False):
        cbs, _ = callbacks_for(study.trial_dir(number), patience=3)
        study.trial_dir(number).mkdir(parents=True, exist_ok=True)
        cbs.backup = TrialBackup(study.backup(number), fingerprint({}, "s", 8), number, cbs,
                                 every=1e9)  # fmt: skip
        if kill:
            cbs.user.append(KillAt(cbs))
        return cbs

    def train(m, cbs, start):
        m.fit(x, y, validation_data=val, epochs=8, initial_epoch=start, batch_size=64,
              shuffle=False, verbose=0, callbacks=cbs.as_list())  # fmt: skip

    whole = trial(0)
    train(model(lr=0.05), whole, 0)
    killed = trial(1, kill=True)
    with pytest.raises(Killed):
        train(model(lr=0.05), killed, 0)
    record = read_json(study.backup(1).checkpoint_state)  # what the kill left on disk
    first3 = [row["val_accuracy"] for row in read_history(study.history(1))[:3]]
    assert record["best_epoch"] == first3.index(max(first3)) + 1
    assert record["file"] == file_identity(study.checkpoint(1))
    resumed = trial(2)
    resumed.backup = TrialBackup(study.backup(1), fingerprint({}, "s", 8), 2, resumed, 1e9)
    m = model(lr=0.05)
    assert restore(m, resumed.backup, study, 2, resumed.pruning.trial, "val_accuracy") == 3
    train(m, resumed, 3)

    def rows(number):
        return [r.split(",")[1:] for r in study.history(number).read_text().splitlines()]

    assert rows(2) == rows(0)
    assert (resumed.checkpoint.best, resumed.checkpoint.best_epoch) == (
        whole.checkpoint.best, whole.checkpoint.best_epoch)  # fmt: skip
    a = keras.saving.load_model(study.checkpoint(0)).get_weights()
    b = keras.saving.load_model(study.checkpoint(2)).get_weights()
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
