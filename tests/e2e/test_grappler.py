"""TensorFlow's graph optimizer (Grappler) chosen around a trial's fit: the functions get the
options, the fit is the same to the bit, and the process gets its own options back."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

from tunecb.training import grappler


def _options() -> dict:
    from tensorflow.python.eager import context

    return dict(context.context()._optimizer_experimental_options)


def _rewrites():
    """The rewrite options a function instantiated now gets (TensorFlow's call options)."""
    from tensorflow.core.protobuf import config_pb2
    from tensorflow.python.eager import context

    config = config_pb2.ConfigProto()
    config.ParseFromString(context.context().function_call_options.config_proto_serialized)
    return config.graph_options.rewrite_options


@pytest.fixture
def users_options():
    """A user's own option, set before tunecb runs; taken back by the test's end."""
    import tensorflow as tf

    before = _options()
    tf.config.optimizer.set_experimental_options({"loop_optimization": True})
    yield _options()
    from tensorflow.python.eager import context

    context.context()._optimizer_experimental_options = before
    context.context()._thread_local_data.function_call_options = None


def test_the_options_reach_the_functions_and_the_users_come_back_also_after_an_error(
    users_options,
):
    from tensorflow.core.protobuf import rewriter_config_pb2 as rc

    with grappler.applied({"constant_folding": False}):
        rewrites = _rewrites()
        assert rewrites.constant_folding == rc.RewriterConfig.OFF
        assert rewrites.loop_optimization == rc.RewriterConfig.ON  # the user's, kept
    assert _options() == users_options
    assert _rewrites().constant_folding == rc.RewriterConfig.DEFAULT
    with pytest.raises(RuntimeError), grappler.applied(grappler.OFF):
        assert _rewrites().disable_meta_optimizer
        raise RuntimeError("the fit failed")
    assert _options() == users_options and not _rewrites().disable_meta_optimizer


class _Sized:
    def __init__(self, params):
        self.params = params

    def count_params(self):
        if self.params is None:
            raise ValueError("not built")
        return self.params


def test_auto_turns_it_off_for_a_small_model_on_a_cpu_and_leaves_a_large_one_alone():
    assert grappler.for_model("auto", _Sized(grappler.SMALL)) == grappler.OFF  # a CPU here
    assert grappler.for_model("auto", _Sized(grappler.SMALL + 1)) == {}
    assert grappler.for_model("auto", _Sized(None)) == {}  # its size unknown
    assert grappler.for_model("tensorflow", _Sized(10)) == {}
    assert grappler.for_model("off", _Sized(10**9)) == grappler.OFF


def _fit(setting):
    x, y = load_digits(return_X_y=True)
    x = (x[:400] / 16.0).astype("float32")
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    m = keras.Sequential([
        keras.Input((64,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dropout(0.2),
        keras.layers.Dense(10, activation="softmax"),
    ])  # fmt: skip
    m.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])  # fmt: skip
    options = grappler.for_model(setting, m)
    assert options == (grappler.OFF if setting == "auto" else {})
    with grappler.applied(options):
        history = m.fit(x[:300], y[:300], validation_data=(x[300:], y[300:400]), epochs=2,
                        batch_size=32, verbose=0)  # fmt: skip
    return m.get_weights(), history.history


def test_auto_fits_to_the_bit_as_tensorflows_own_options():
    own_weights, own_history = _fit("tensorflow")
    weights, history = _fit("auto")
    assert history == own_history
    for a, b in zip(own_weights, weights, strict=True):
        np.testing.assert_array_equal(a, b)


SEES_OPTIONS = """
class Sees(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        from tensorflow.python.eager import context

        options = context.context()._optimizer_experimental_options
        seen = options.get("disable_meta_optimizer")
        with open("seen.txt", "a") as handle:
            handle.write(f"{seen}\\n")


@study.callbacks
def callbacks(trial):
    return [Sees()]
"""


def test_a_search_fits_with_auto_and_the_flag_keeps_tensorflows_own(
    tmp_path, study_file, cli, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    path = study_file(extra=SEES_OPTIONS)
    before = _options()
    code, _, err = cli("search", path, "--n-trials", "1", "--epochs", "1", "--results", "a")
    assert code == 0, err
    code, _, err = cli("search", path, "--n-trials", "1", "--epochs", "1", "--results", "b",
                       "--graph-optimizer", "tensorflow")  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "seen.txt").read_text().split() == ["True", "None"]
    assert _options() == before  # the trials ran in this process (TUNECB_JOBS=0)
