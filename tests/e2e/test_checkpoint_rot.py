"""Checkpoints that rotted or hold code: the report marks an unreadable one, and `load_best`
names the trial, the file, what is wrong and the next best checkpoint that is intact.

Real checkpoints from real searches, damaged the ways a killed writer or a careless copy
leaves them, and crafted the ways known safe_mode bypasses did (refused by Keras >= 3.15.1,
the floor in pyproject.toml).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import time
import zipfile
from pathlib import Path

import pytest
from conftest import write_study

import tunecb
from tunecb.errors import CheckpointError
from tunecb.reporting.data.integrity import checkpoint_problem


@pytest.fixture
def study(finished_study: Path, tmp_path: Path) -> tuple[Path, list[dict]]:
    """A copy of the finished 4-trial study (results folder, rows of its JSON report)."""
    copy = tmp_path / "fin"
    shutil.copytree(finished_study, copy)
    return copy, json.loads(_report(copy))


def _report(folder: Path, *flags: str) -> str:
    from tunecb.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["report", str(folder), "--format", "json", *flags]) == 0
    return out.getvalue()


def _rewrite(path: Path, mutate=None, drop: str | None = None) -> None:
    """Rewrite the checkpoint zip ``path``: without member ``drop``, or with its config
    changed by ``mutate(config)``."""
    with zipfile.ZipFile(path) as src:
        members = [(i.filename, src.read(i)) for i in src.infolist()]
    with zipfile.ZipFile(path, "w") as dst:
        for name, data in members:
            if name == drop:
                continue
            if name == "config.json" and mutate is not None:
                config = json.loads(data)
                mutate(config)
                data = json.dumps(config).encode()
            dst.writestr(name, data)


def test_rotten_checkpoints_are_marked_in_the_report_and_load_best_names_the_next_intact(
    study, cli
):
    folder, rows = study
    paths = [Path(r["checkpoint"]) for r in rows]
    data = paths[0].read_bytes()
    paths[0].write_bytes(data[: len(data) // 2])  # a writer killed mid-save
    paths[1].write_bytes(b"")  # what SIGKILL left 5 times in 8 (design.md)
    paths[2].write_text("some notes saved over the model\n")

    rows = json.loads(_report(folder))
    problems = [r.get("checkpoint_problem") for r in rows]
    assert problems[0].startswith("unreadable: truncated zip (")
    assert problems[1] == "unreadable: empty file (0 bytes)"
    # what is in the file is never quoted (issue 18: it may be a link to a secret)
    assert problems[2] == "unreadable: not a zip archive: not a Keras checkpoint (text)"
    assert problems[3] is None and [r["checkpoint"] for r in rows] == [str(p) for p in paths]
    for fmt, flags in (("csv", []), ("table", ["--wide"]), ("markdown", [])):
        code, out, err = cli("report", folder, "--format", fmt, *flags)
        assert code == 0, err
        assert out.count("unreadable: ") == 3 and "checkpoint_problem" in out
    code, _, err = cli("report", folder, "--format", "html", "--output", folder / "r.html")
    assert code == 0, err
    assert (folder / "r.html").read_text().count("unreadable: ") == 3

    last = rows[3]["trial"]
    for kwargs, rank, what in (
        ({}, 1, "truncated zip ("),
        ({"rank": 2}, 2, "empty file (0 bytes)"),
        ({"trial": rows[2]["trial"]}, 3, "not a zip archive"),
    ):
        with pytest.raises(CheckpointError) as caught:
            tunecb.load_best(folder, **kwargs)
        message = str(caught.value)
        assert "\n" not in message and "File not found" not in message
        assert message.startswith(
            f"trial {rows[rank - 1]['trial']}'s checkpoint {paths[rank - 1]} is unreadable ({what}"
        )
        assert message.endswith(
            f"the next best checkpoint that is intact is rank 4 (trial {last}): "
            f"load_best({str(folder)!r}, rank=4)"
        )
    assert tunecb.load_best(folder, rank=4).compiled  # the one that is intact loads

    _rewrite(paths[3], drop="config.json")  # a zip, but not a Keras checkpoint
    assert json.loads(_report(folder))[3]["checkpoint_problem"] == (
        "unreadable: zip without config.json: not a Keras checkpoint"
    )
    with pytest.raises(CheckpointError, match=r"no other trial has a checkpoint that is intact$"):
        tunecb.load_best(folder, rank=4)


def test_a_checkpoint_damaged_past_the_zip_check_is_a_tunecb_error(study):
    folder, rows = study
    path = Path(rows[0]["checkpoint"])
    data = bytearray(path.read_bytes())
    weights = data.find(b"\x89HDF\r\n\x1a\n")
    data[weights + 2000 : weights + 2100] = bytes(100)  # rot inside the weights
    path.write_bytes(bytes(data))
    assert checkpoint_problem(path) is None  # the cheap check reads the weights' start only
    with pytest.raises(CheckpointError) as caught:
        tunecb.load_best(folder)
    assert str(caught.value) == (
        f"trial {rows[0]['trial']}'s checkpoint {path} cannot be loaded (BadZipFile: Bad "
        "CRC-32 for file 'model.weights.h5'); the next best checkpoint that is intact is "
        f"rank 2 (trial {rows[1]['trial']}): load_best({str(folder)!r}, rank=2)"
    )


def test_the_check_is_cheap_and_cached(study):
    _, rows = study
    path = Path(rows[0]["checkpoint"])
    started = time.perf_counter()
    for _ in range(200):
        path.touch()  # a new mtime: checked again
        assert checkpoint_problem(path) is None
    assert (time.perf_counter() - started) / 200 < 0.005  # ~0.1 ms on this machine
    path.write_bytes(b"")
    assert checkpoint_problem(path) == "empty file (0 bytes)"  # a change is seen


def _lambda_layer(marker: Path) -> dict:
    """A serialised Lambda whose Python function writes ``marker`` when it runs."""
    import keras

    function = eval(
        f"lambda x: __import__('pathlib').Path({str(marker)!r}).write_text('ran') and x"
    )
    layer = keras.layers.Lambda(function, name="payload")
    return keras.saving.serialize_keras_object(layer) | {
        "build_config": {"input_shape": [None, 64]}
    }


def _enable_unsafe_then_lambda(marker: Path):
    def mutate(config: dict) -> None:  # CVE-2025-9906: the config turns safe mode off first
        layers = config["config"]["layers"]
        layers.insert(
            0,
            {
                "module": "keras.config",
                "class_name": "function",
                "config": "enable_unsafe_deserialization",
                "registered_name": "function",
            },
        )
        layers.insert(2, _lambda_layer(marker))  # fmt: skip

    return mutate


def _lambda_calls_load_model(marker: Path):
    def mutate(config: dict) -> None:  # a Lambda whose function is load_model(safe_mode=False)
        config["config"]["layers"].insert(1, {
            "module": "keras.layers", "class_name": "Lambda",
            "config": {"name": "loader", "arguments": {"safe_mode": False}, "function": {
                "module": "keras.models", "class_name": "function", "config": "load_model",
                "registered_name": "function"}},
        })  # fmt: skip

    return mutate


def _lambda_calls_os_system(marker: Path):
    def mutate(config: dict) -> None:
        config["config"]["layers"].insert(1, {
            "module": "keras.layers", "class_name": "Lambda",
            "config": {"name": "shell", "arguments": {}, "function": {
                "module": "os", "class_name": "function", "config": "system",
                "registered_name": "function"}},
        })  # fmt: skip

    return mutate


@pytest.mark.parametrize(
    ("craft", "named"),
    [
        (_enable_unsafe_then_lambda, "a call to keras.config.enable_unsafe_deserialization"),
        (_lambda_calls_load_model, "a call to keras.models.load_model"),
        (_lambda_calls_os_system, "a call to os.system"),
    ],
)
def test_a_crafted_checkpoint_is_refused_without_running_its_code(study, craft, named, tmp_path):
    folder, rows = study
    marker = tmp_path / "payload-ran"
    path = Path(rows[0]["checkpoint"])
    _rewrite(path, craft(marker))
    assert json.loads(_report(folder))[0].get("checkpoint_problem") is None  # a sound zip
    with pytest.raises(CheckpointError) as caught:
        tunecb.load_best(folder)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(
        f"trial {rows[0]['trial']}'s checkpoint {path} holds code that safe loading refuses "
        f"to run ({named}"
    )
    assert "else the file was altered: do not load it" in message
    assert message.endswith(
        f"rank 2 (trial {rows[1]['trial']}): load_best({str(folder)!r}, rank=2)"
    )
    assert "safe_mode=False" not in message and "enable_unsafe_deserialization()" not in message
    assert not marker.exists()
    from keras.src.saving import serialization_lib

    assert serialization_lib.in_safe_mode() is not False  # the config did not turn it off


def test_an_unregistered_function_asks_for_custom_objects(study):
    folder, rows = study

    def act(config: dict) -> None:  # what Keras writes for Dense(activation=a_plain_function)
        dense = config["config"]["layers"][1]["config"]
        dense["activation"] = {"module": "builtins", "class_name": "function",
                               "config": "act", "registered_name": "function"}  # fmt: skip

    _rewrite(Path(rows[0]["checkpoint"]), act)
    with pytest.raises(CheckpointError) as caught:
        tunecb.load_best(folder)
    assert "uses a custom class or function that Keras cannot find (Could not locate " in str(
        caught.value
    ) and "custom_objects={'Name': Name}" in str(caught.value)
    import keras

    model = tunecb.load_best(folder, custom_objects={"act": keras.activations.relu})
    assert model.compiled


def test_a_lambda_layer_from_a_real_search_is_refused_without_suggesting_unsafe_loading(
    cli, tmp_path
):
    path = write_study(
        tmp_path,
        settings='monitor="val_accuracy", epochs=1, batch_size=64, n_trials=1, seed=0',
        layers_extra="keras.layers.Lambda(lambda x: x * 1.0, name='scale'),",
    )
    code, _, err = cli("search", path, "--results", tmp_path / "r")
    assert code == 0, err
    folder = tmp_path / "r" / "tiny"
    assert json.loads(_report(folder))[0].get("checkpoint_problem") is None
    with pytest.raises(CheckpointError) as caught:
        tunecb.load_best(folder)
    message = str(caught.value)
    assert re.fullmatch(
        rf"trial 0's checkpoint {re.escape(str(folder))}/trials/0/best\.keras holds code that "
        r"safe loading refuses to run \(a Lambda layer 'scale'\), and tunecb loads checkpoints "
        r"only in Keras' safe mode; .*; no other trial has a checkpoint that is intact and "
        r"holds no code",
        message,
    ), message
    assert "register_keras_serializable" in message
    assert "safe_mode=False" not in message and "enable_unsafe" not in message
