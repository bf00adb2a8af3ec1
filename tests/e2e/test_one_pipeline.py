"""One ``tf.data`` pipeline a fit for array data (:mod:`tunecb.training.one_pipeline`): every
row once an epoch, an epoch's order a function of (seed, epoch), a resumed fit exactly the
uninterrupted one, the validation metrics those of ``evaluate``; anything it cannot reproduce
fits from the arrays. Real tiny fits on TensorFlow (the suite's backend)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tunecb.training import fast_fit, one_pipeline


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 8))  # float64: cast to float32 as Keras' array adapter does
    y = (x[:, 0] + x[:, 1] > 0).astype("int64")
    return {"x": x[:100], "y": y[:100], "batch_size": 32, "validation_data": (x[100:], y[100:])}


def model(steps: int = 1):
    keras.utils.set_random_seed(0)
    m = keras.Sequential([
        keras.Input((8,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dropout(0.2),
        keras.layers.Dense(2, activation="softmax"),
    ])  # fmt: skip
    m.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"], steps_per_execution=steps)  # fmt: skip
    return m


def rows_of(dataset, steps: int, epochs: int) -> list[list[list[int]]]:
    """The row numbers (the labels of an ``arange``) of each epoch's batches."""
    it = iter(dataset)
    return [[next(it)[1].numpy().tolist() for _ in range(steps)] for _ in range(epochs)]


def test_every_row_once_an_epoch_in_an_order_fixed_by_seed_and_epoch():
    fit = {"x": np.zeros((70, 3)), "y": np.arange(70), "batch_size": 32}
    whole = one_pipeline.arguments(fit, seed=7, initial_epoch=0, epochs=4)
    assert whole["steps_per_epoch"] == 3  # 32 + 32 + 6: the last batch partial, as Keras'
    epochs = rows_of(whole["x"], 3, 4)
    for batches in epochs:
        assert [len(b) for b in batches] == [32, 32, 6]
        assert sorted(np.concatenate(batches).tolist()) == list(range(70))
    assert epochs[0] != epochs[1]  # shuffled again every epoch
    orders = one_pipeline.epoch_orders(7, 0, 4, 70)
    assert [np.concatenate(b).tolist() for b in epochs] == orders.tolist()
    resumed = one_pipeline.arguments(fit, seed=7, initial_epoch=2, epochs=4)
    assert rows_of(resumed["x"], 3, 2) == epochs[2:]  # a fit resumed at epoch 2
    other = one_pipeline.arguments(fit, seed=8, initial_epoch=0, epochs=1)
    assert rows_of(other["x"], 3, 1) != epochs[:1]


def test_a_fit_resumed_at_an_epoch_ends_with_the_same_weights_bit_for_bit(data):
    def fit(m, start, stop):
        args = one_pipeline.arguments(data, seed=3, initial_epoch=start, epochs=stop)
        return m.fit(**args, epochs=stop, initial_epoch=start, verbose=0).history

    whole, split = model(), model()
    history = fit(whole, 0, 4)
    first, second = fit(split, 0, 2), fit(split, 2, 4)
    for a, b in zip(whole.get_weights(), split.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert {k: v[:2] for k, v in history.items()} == first
    assert {k: v[2:] for k, v in history.items()} == second


def test_validation_metrics_are_those_of_evaluate_on_the_arrays_and_steps_per_batch(data):
    m = model()
    args = one_pipeline.arguments(data, seed=0, initial_epoch=0, epochs=2)
    logs = m.fit(**args, epochs=2, verbose=0).history
    assert m.history.params["steps"] == 4  # 100 rows at 32: what the arrays' fit says
    vx, vy = data["validation_data"]
    evaluated = m.evaluate(vx, vy, batch_size=32, verbose=0, return_dict=True)
    assert logs["val_loss"][-1] == pytest.approx(evaluated["loss"], rel=1e-6)
    assert logs["val_accuracy"][-1] == evaluated["accuracy"]


@pytest.mark.parametrize(
    "extra, why",
    [({"sample_weight": np.ones(100)}, "sample_weight"),
     ({"validation_split": 0.2}, "validation_split"), ({"steps_per_epoch": 2}, "steps_per_epoch"),
     ({"class_weight": {0: 1.0, 1: 2.0}}, "class_weight"), ({"shuffle": False}, "shuffle"),
     ({"validation_data": (np.zeros((3, 8)),) * 3}, "validation_data")],
)  # fmt: skip
def test_what_it_cannot_reproduce_fits_from_the_arrays(data, extra, why):
    fit = {**data, **extra}
    assert one_pipeline.unsupported(fit) == why
    assert one_pipeline.feed(model(), "auto", 1, fit, seed=0, initial_epoch=0, epochs=2) is fit


def test_batches_a_call_the_user_chose_are_kept_and_autos_sixteen_is_undone_where_it_pays(data):
    assert one_pipeline.feed(model(), 4, 1, data, seed=0, initial_epoch=0, epochs=2) is data
    compiled = model(steps=4)  # compiled with 4: kept, from the arrays
    assert one_pipeline.feed(compiled, "auto", 4, data, seed=0, initial_epoch=0, epochs=2) is data
    m = model()
    assert fast_fit.apply(m, "auto", [], data) == fast_fit.AUTO_STEPS  # epochs unknown: 16
    fed = one_pipeline.feed(m, "auto", 1, data, seed=0, initial_epoch=0, epochs=2)
    assert m.steps_per_execution == 1 and fed["steps_per_epoch"] == 4
    big = {"x": np.zeros((1000, 8)), "y": np.zeros(1000, "int64"), "batch_size": 1}
    # 1,000 batches an epoch: 16 a call saves more than one pipeline
    m = model()
    fast_fit.apply(m, "auto", [], big)
    assert one_pipeline.feed(m, "auto", 1, big, seed=0, initial_epoch=0, epochs=2) is big
    assert m.steps_per_execution == fast_fit.AUTO_STEPS
