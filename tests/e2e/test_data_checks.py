"""Data and models checked before the first trial (issue 18, finding 8): a one-shot
generator, a tf.data.Dataset without labels and a model whose input does not fit the data
are refused in one line naming the data function, the value and the fix (exit 2); a Keras
layer-call error is shown by its informative line, without terminal escapes. Real CLI runs
and real fits."""

from __future__ import annotations

import json

import pytest
from conftest import DEFAULT_SETTINGS, trial_json, write_study

RETURN = "    return (x[:400], y[:400]), (x[400:], y[400:])"


def _search(cli, tmp_path, path):
    return cli("search", str(path), "--results", str(tmp_path / "results"))


@pytest.mark.parametrize(
    ("returned", "what"),
    [
        ("    return ((a, b) for a, b in [(x[:400], y[:400])]), (x[400:], y[400:])",
         "a generator as train data"),
        ("    return (x[:400], y[:400]), iter([(x[400:], y[400:])])",
         "a list_iterator as validation data"),
    ],
    ids=["generator", "iterator"],
)  # fmt: skip
def test_a_one_shot_iterator_is_refused_at_load(tmp_path, cli, returned, what):
    path = write_study(tmp_path)
    path.write_text(path.read_text().replace(RETURN, returned))
    code, out, err = _search(cli, tmp_path, path)
    assert code == 2 and err.count("\n") == 1, out + err
    assert f"the data function load() in {path} returned {what}" in err, err
    assert "keras.utils.PyDataset" in err and "tf.data.Dataset" in err
    assert not (tmp_path / "results" / "tiny" / "trials" / "0").exists()  # no trial spent


def test_a_dataset_without_labels_is_refused_at_load(tmp_path, cli):
    path = write_study(tmp_path)
    path.write_text(path.read_text().replace(RETURN, (
        "    import tensorflow as tf\n\n"
        "    train = tf.data.Dataset.from_tensor_slices(x[:400]).batch(64)\n"
        "    return train, (x[400:], y[400:])"
    )))  # fmt: skip
    code, out, err = _search(cli, tmp_path, path)
    assert code == 2 and err.count("\n") == 1, out + err
    assert f"the data function load() in {path} returned a tf.data.Dataset as train data" in err
    assert "without labels" in err and "(x, y)" in err, err
    assert not (tmp_path / "results" / "tiny" / "trials" / "0").exists()


def test_a_model_whose_input_does_not_fit_the_data_is_refused_before_the_first_fit(tmp_path, cli):
    path = write_study(tmp_path)
    path.write_text(path.read_text().replace("keras.Input((64,))", "keras.Input((8,))"))
    code, out, err = _search(cli, tmp_path, path)
    assert code == 2 and err.count("\n") == 1, out + err
    assert "the model of trial 0 takes inputs of shape (8,)" in err, err
    assert f"the data function load() in {path} returns train inputs of shape (64,)" in err
    trial = trial_json(tmp_path / "results", "tiny", 0)
    assert trial["state"] == "FAIL" and trial["epochs_run"] == 0


LAYER_CALL_ERROR = """
class Picky(keras.layers.Layer):
    def compute_output_shape(self, shape):  # building the model: fine
        return shape

    def call(self, x):  # fitting it: not
        raise ValueError("Invalid input shape: Picky expects (None, 8), but input has (None, 64)")
"""


def test_a_keras_layer_call_error_is_shown_by_its_informative_line(tmp_path, cli):
    settings = DEFAULT_SETTINGS.replace("n_trials=3", "n_trials=1")
    path = write_study(tmp_path, settings=settings, extra=LAYER_CALL_ERROR,
                       layers_extra="Picky(),")  # fmt: skip
    code, out, err = _search(cli, tmp_path, path)
    error = trial_json(tmp_path / "results", "tiny", 0)["error"]
    first = error.splitlines()[0]
    assert "Exception encountered when calling" not in first, first
    assert first.startswith("ValueError: Invalid input shape: Picky expects (None, 8)"), first
    assert "\x1b[" not in error and "\x1b[" not in out + err
    assert first.split(" (at ")[0] in out, out  # the terminal shows the same line
    rows = json.loads(cli("report", str(tmp_path / "results" / "tiny"), "--format", "json")[1])
    assert "\x1b[" not in rows[0]["error"]


def test_an_unbatched_dataset_is_refused_before_the_first_fit_naming_batch(tmp_path, cli):
    path = write_study(tmp_path)
    path.write_text(path.read_text().replace(RETURN, (
        "    import tensorflow as tf\n\n"
        "    ds = lambda a, b: tf.data.Dataset.from_tensor_slices((a, b))\n"
        "    return ds(x[:400], y[:400]), ds(x[400:], y[400:]).batch(64)"
    )))  # fmt: skip
    code, out, err = _search(cli, tmp_path, path)
    assert code == 2 and err.count("\n") == 1, out + err
    assert "returns a tf.data.Dataset of single samples (shape (64,))" in err, err
    assert "dataset.batch(batch_size)" in err
