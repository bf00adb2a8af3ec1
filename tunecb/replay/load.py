"""Load a trial's best model from its self-contained checkpoint; never rebuilds from code.

Checkpoints load with Keras' ``safe_mode=True`` only: a checkpoint that holds code (a
``Lambda`` of a Python function, a ``TorchModuleWrapper``, a config that calls a non-modeling
API) is refused with a :class:`~tunecb.errors.CheckpointError`, as is one that is unreadable
(truncated, empty, overwritten); both name the next best checkpoint that is intact.

>>> model = load_best("results/digits")              # doctest: +SKIP
>>> second = load_best("results/digits", rank=2)     # doctest: +SKIP
>>> model7 = load_best("results/digits", trial=7)    # doctest: +SKIP
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunecb.errors import CheckpointError, ConfigError, ResultsError, first_line
from tunecb.replay.front_choice import choose
from tunecb.reporting.data.integrity import checkpoint_problem
from tunecb.reporting.data.records import study_records

if TYPE_CHECKING:
    import keras

# Layers whose config carries code that Keras' safe mode refuses to deserialise.
_CODE_LAYERS = ("Lambda", "TorchModuleWrapper", "TFSMLayer")
# Functions a config may name that are no modeling code (crafted checkpoints use them).
_NON_MODELING = ("keras.config", "keras.models", "keras.saving", "keras.utils")
_UNSAFE_BUILTINS = frozenset({"eval", "exec", "compile", "open", "__import__", "getattr"})
# Words of Keras' own refusals (Keras 3.15: Lambda, TorchModuleWrapper, non-modeling APIs).
_SAFE_MODE_WORDS = ("safe_mode", "safe mode", "unsafe", "non-modeling api", "arbitrary code")


def best_checkpoint(
    path: str | Path, rank: int = 1, trial: int | None = None, **front: Any
) -> Path:
    """The checkpoint file of row ``rank`` of the report (1 = best), or of ``trial``, or of
    a multi-objective study's front member chosen by ``best_on=`` and ``within=``
    (:func:`tunecb.replay.front_choice.choose`).

    Raises :class:`ResultsError` when that trial has no checkpoint, or an unreadable one
    (naming the next best trial whose checkpoint is intact)."""
    records, index = _select(path, rank, trial, **front)
    record = records[index]
    removed = record.get("checkpoint_removed")
    if not record["checkpoint"] and removed:
        keep = removed.get("keep_checkpoints")
        raise ResultsError(
            f"trial {record['trial']} of {path}: its checkpoint was removed by "
            f"--keep-checkpoints {keep} (only the {keep} best trials keep theirs); "
            "pick a kept one with rank= or trial="
        )
    if not record["checkpoint"]:
        raise ResultsError(
            f"trial {record['trial']} ({record['state']}, {record['stop_reason']}) of {path} "
            "has no checkpoint; pick another with rank= or trial="
        )
    problem = checkpoint_problem(record["checkpoint"])
    if problem is not None:
        raise CheckpointError(
            f"trial {record['trial']}'s checkpoint {record['checkpoint']} is unreadable "
            f"({problem}); {_next_best(path, records, index)}"
        )
    return Path(record["checkpoint"])


def load_best(
    path: str | Path,
    rank: int = 1,
    *,
    trial: int | None = None,
    custom_objects: dict[str, Any] | None = None,
    compile: bool = True,
    best_on: str | None = None,
    within: dict[str, float] | None = None,
) -> keras.Model:
    """The model of the best trial (or ``rank``-th best, or trial number ``trial``) of the
    study in results folder ``path``, loaded with ``safe_mode=True``, compiled as trained,
    ready to ``evaluate``. ``custom_objects`` is passed to Keras for custom layers.

    In a multi-objective study, ``best_on=`` and ``within=`` pick a model from the Pareto
    front: ``load_best(path, best_on="val_accuracy", within={"params": 20_000})`` is the
    most accurate with at most 20,000 parameters (``within`` alone: the best on the monitor).

    Raises :class:`CheckpointError` naming the trial, the file, what is wrong and the next best
    checkpoint that is intact when the checkpoint is unreadable or cannot be loaded, and when
    it holds code that safe loading refuses (a ``Lambda`` layer, say)."""
    front = {"best_on": best_on, "within": within}
    checkpoint = best_checkpoint(path, rank, trial, **front)
    from tunecb.training.loading import load_model

    try:  # on the backend Keras runs on here: any can load any checkpoint
        return load_model(checkpoint, custom_objects=custom_objects, compile=compile)
    except Exception as exc:
        records, index = _select(path, rank, trial, **front)
        raise CheckpointError(_load_failure(path, records, index, checkpoint, exc)) from exc


def _select(
    path: str | Path,
    rank: int,
    trial: int | None,
    best_on: str | None = None,
    within: dict[str, float] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """The report's records, best first, and the index of the one asked for."""
    result = study_records(path)
    records = result.records
    if best_on is not None or within:
        trial = choose(records, result.objectives, best_on, within, str(path))["trial"]
    if trial is not None:
        for index, record in enumerate(records):
            if record["trial"] == trial:
                return records, index
        raise ResultsError(f"trial={trial}: {path} has no such trial (it has {len(records)})")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"rank={rank!r}: use 1 for the best trial, 2 for the next, ...")
    if rank > len(records):
        raise ResultsError(f"rank={rank}: {path} has only {len(records)} trials")
    return records, rank - 1


def _next_best(
    path: str | Path, records: list[dict[str, Any]], index: int, no_code: bool = False
) -> str:
    """Which trial to load instead: the best ranked below ``index`` whose checkpoint is
    intact (and, with ``no_code``, holds no code), or with none below, the best above it."""
    below = range(index + 1, len(records))
    what = "intact and holds no code" if no_code else "intact"
    for candidates, word in ((below, "next best"), (range(index), "best")):
        for other in candidates:
            checkpoint = records[other]["checkpoint"]
            if not checkpoint or checkpoint_problem(checkpoint) is not None:
                continue
            if no_code and _code_in(Path(checkpoint)):
                continue
            number = records[other]["trial"]
            return (
                f"the {word} checkpoint that is {what} is rank {other + 1} (trial {number}): "
                f"load_best({str(path)!r}, rank={other + 1})"
            )
    return f"no other trial has a checkpoint that is {what}"


def _load_failure(
    path: str | Path, records: list[dict[str, Any]], index: int, checkpoint: Path, exc: Exception
) -> str:
    """One line for a checkpoint that passed the zip check but that Keras did not load."""
    number = records[index]["trial"]
    reason = first_line(str(exc)) or type(exc).__name__
    code = _code_in(checkpoint)
    if code or any(word in reason.lower() for word in _SAFE_MODE_WORDS):
        what = ", ".join(code[:3]) if code else first_line(reason, 120)
        return (
            f"trial {number}'s checkpoint {checkpoint} holds code that safe loading refuses to "
            f"run ({what}), and tunecb loads checkpoints only in Keras' safe mode; if the model "
            "builder makes it, use a layer registered with "
            "@keras.saving.register_keras_serializable instead (passed in custom_objects=), "
            f"else the file was altered: do not load it; {_next_best(path, records, index, True)}"
        )
    missing = re.search(r"Could not locate (?:class|function) '[^']*'", str(exc))
    if missing:
        return (
            f"trial {number}'s checkpoint {checkpoint} uses a custom class or function that "
            f"Keras cannot find ({missing.group(0)}); pass it to load_best with "
            "custom_objects={'Name': Name} (or register it with "
            "@keras.saving.register_keras_serializable)"
        )
    return (
        f"trial {number}'s checkpoint {checkpoint} cannot be loaded ({type(exc).__name__}: "
        f"{first_line(reason, 160)}); {_next_best(path, records, index)}"
    )


def _code_in(checkpoint: Path) -> list[str]:
    """What in the checkpoint's ``config.json`` carries code (a few words each): layers of
    :data:`_CODE_LAYERS` (a ``Lambda`` of a Python lambda), and unregistered functions from a
    module outside Keras' modeling ones (``os.system``, ``keras.config.…``)."""
    from tunecb.training.loading import archive_config

    config = archive_config(checkpoint)
    if config is None:
        return []
    found: list[str] = []
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            name = item.get("class_name")
            config = item.get("config") if isinstance(item.get("config"), dict) else {}
            function = config.get("function")
            python = isinstance(function, dict) and function.get("class_name") == "__lambda__"
            if name in _CODE_LAYERS and (name != "Lambda" or python):
                layer = config.get("name")
                found.append(f"a {name} layer {layer!r}" if layer else f"a {name} layer")
            elif item.get("registered_name") == "function" and isinstance(item.get("config"), str):
                module, function_name = str(item.get("module") or ""), item["config"]
                if module == "builtins":  # how Keras writes a user's unregistered function
                    unsafe = function_name in _UNSAFE_BUILTINS
                else:
                    unsafe = not module.startswith("keras.") or module.startswith(_NON_MODELING)
                if unsafe:
                    found.append(f"a call to {module}.{function_name}")
            stack.extend(reversed(list(item.values())))
    return found
