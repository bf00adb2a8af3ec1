"""Several batches per backend call (``steps_per_execution``): the same fit, faster; never
where a callback needs every batch. Real tiny fits on TensorFlow (the suite's backend)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

from tunecb.training import fast_fit, one_pipeline
from tunecb.training.callbacks import make_callbacks


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    x = (x[:600] / 16.0).astype("float32")
    return (x[:500], y[:500]), (x[500:], y[500:600])


def model():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([
        keras.Input((64,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dropout(0.2),
        keras.layers.Dense(10, activation="softmax"),
    ])  # fmt: skip
    m.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])  # fmt: skip
    return m


def fit(m, data, callbacks=()):
    (x, y), val = data
    keras.utils.set_random_seed(1)
    history = m.fit(x, y, validation_data=val, epochs=3, batch_size=32, verbose=0,
                    callbacks=list(callbacks))  # fmt: skip
    return history.history


class CountBatches(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


def test_auto_fits_exactly_as_one_batch_per_call_and_the_checkpoint_keeps_the_compile(
    tmp_path, digits
):
    plain, fast = model(), model()
    assert keras.backend.backend() == "tensorflow"
    assert fast_fit.apply(fast, "auto", [], {}) == fast_fit.AUTO_STEPS
    assert fast.steps_per_execution == fast_fit.AUTO_STEPS
    assert fit(fast, digits) == fit(plain, digits)  # every epoch's metrics, to the bit
    for a, b in zip(plain.get_weights(), fast.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    fast.save(tmp_path / "m.keras")  # what a trial's checkpoint holds: the user's compile
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert loaded.steps_per_execution == 1


def test_a_callback_with_a_batch_hook_keeps_one_batch_per_call(tmp_path, digits):
    m, counter = model(), CountBatches()
    assert fast_fit.apply(m, "auto", [counter], {}) == 1
    fit(m, digits, [counter])
    assert counter.batches == 3 * 16  # 500 rows / 32: 16 batches an epoch, each seen


def test_a_fit_that_counts_its_steps_keeps_one_batch_per_call(digits):
    # Keras runs whole calls: with steps_per_epoch=1 on a repeated dataset, 16 batches per
    # call trained 16 batches an epoch
    import tensorflow as tf

    (x, y), _ = digits
    m = model()
    assert fast_fit.apply(m, "auto", [], {"steps_per_epoch": 1}) == 1
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).repeat()
    m.fit(data, epochs=3, steps_per_epoch=1, verbose=0)
    assert int(m.optimizer.iterations.numpy()) == 3


def test_tunecbs_own_callbacks_have_no_batch_hook(tmp_path):
    import optuna

    from tunecb.study import schedules
    from tunecb.study.settings import resolve

    trial = optuna.create_study(direction="maximize").ask()
    s = resolve({"monitor": "val_accuracy", "epochs": 3, "tensorboard": True}, {},
                default_name="t")  # fmt: skip
    cbs = make_callbacks(
        trial, s, schedules.parse_schedule("plateau"), tmp_path / "best.keras",
        tmp_path / "history.csv", tensorboard_dir=tmp_path / "tb",
    )  # fmt: skip
    assert not fast_fit.has_batch_hooks(cbs.as_list())


def test_a_forced_number_and_off(digits):
    m = model()
    assert fast_fit.apply(m, 4, [], {}) == 4
    m = model()
    assert fast_fit.apply(m, 1, [], {}) == 1 and m.steps_per_execution == 1


SEES_STEPS = """
class Sees(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        with open("steps.txt", "a") as handle:
            handle.write(f"{self.model.steps_per_execution}\\n")


@study.callbacks
def callbacks(trial):
    return [Sees()]
"""


def test_a_search_fits_with_auto_where_it_pays_and_the_flag_turns_it_off(
    tmp_path, study_file, cli, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    path = study_file(extra=SEES_STEPS)
    # 1 epoch of 7 + 2 batches avoids 7 calls: far from paying for the loop
    code, _, err = cli("search", path, "--n-trials", "1", "--epochs", "1", "--results", "a")
    assert code == 0, err
    monkeypatch.setattr(fast_fit, "LOOP_COST", 0.0)  # a loop that costs nothing pays at once
    monkeypatch.setattr(fast_fit, "LOOP_COST_PER_WEIGHT", 0.0)
    # and one pipeline a fit (tunecb.training.one_pipeline) saves nothing: arrays, 16 a call
    monkeypatch.setattr(one_pipeline, "EPOCH_SAVING", 0.0)
    monkeypatch.setattr(one_pipeline, "BATCH_SAVING", 0.0)
    code, _, err = cli("search", path, "--n-trials", "1", "--epochs", "1", "--results", "b")
    assert code == 0, err
    code, _, err = cli("search", path, "--n-trials", "1", "--epochs", "1", "--results", "c",
                       "--steps-per-execution", "1")  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "steps.txt").read_text().split() == ["1", str(fast_fit.AUTO_STEPS), "1"]


def _count_traces(m):
    """How often ``m``'s train step is traced (a Python call per trace)."""
    traces = [0]
    step = m.train_step

    def counted(data):
        traces[0] += 1
        return step(data)

    m.train_step = counted
    return traces


@pytest.mark.parametrize("form", ["arrays", "dataset"])
def test_built_before_the_fit_its_train_step_is_traced_once_and_fits_to_the_bit(digits, form):
    """The optimizer and metric state built ahead (``prebuild``) spare the train step's
    second trace (Keras traces a step that creates variables twice) and change nothing."""
    import tensorflow as tf

    (x, y), val = digits
    arguments = {"x": x, "y": y, "batch_size": 32}
    if form == "dataset":
        arguments = {"x": tf.data.Dataset.from_tensor_slices((x, y)).batch(32)}
    plain, built = model(), model()
    plain_traces, built_traces = _count_traces(plain), _count_traces(built)
    assert fast_fit.prebuild(built, arguments)
    assert built.optimizer.built and not plain.optimizer.built
    histories = []
    for m in (plain, built):
        keras.utils.set_random_seed(1)
        histories.append(m.fit(**arguments, validation_data=val, epochs=2, verbose=0).history)
    assert histories[0] == histories[1]  # every epoch's metrics, to the bit
    for a, b in zip(plain.get_weights(), built.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert (plain_traces[0], built_traces[0]) == (2, 1)


def test_no_build_ahead_for_a_custom_step_an_eager_model_or_data_of_unknown_shape(digits):
    (x, y), _ = digits

    class Own(keras.Sequential):
        def train_step(self, data):
            return super().train_step(data)

    own = Own([keras.Input((64,)), keras.layers.Dense(10, activation="softmax")])
    own.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    eager = model()
    eager.run_eagerly = True
    assert not fast_fit.prebuild(own, {"x": x, "y": y})
    assert not fast_fit.prebuild(eager, {"x": x, "y": y})
    assert not fast_fit.prebuild(model(), {"x": iter([(x, y)])})  # a generator: unknown
    assert not fast_fit.prebuild(model(), {})
