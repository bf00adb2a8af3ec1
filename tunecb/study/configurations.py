"""Configurations the user gives to run first (``--enqueue FILE``, ``Study(enqueue=...)``):
read from a JSON Lines file (one object of parameters per line), a CSV file (a column per
parameter), or a list of dicts in code.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "first.csv"
>>> _ = path.write_text("lr,units,act\\n0.01,16,relu\\n")
>>> read(str(path))[0].params
{'lr': 0.01, 'units': 16, 'act': 'relu'}
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunecb.errors import ConfigError

_FIX = "one JSON object of parameters per line (.jsonl), or a CSV with a column per parameter"


@dataclass(frozen=True)
class Configuration:
    """One given configuration: its parameters and where it was given (``FILE line N``)."""

    params: dict[str, Any]
    where: str


def check(value: Any) -> Any:
    """The ``enqueue`` setting's check: ``None``, a file path, or a list of dicts (read and
    checked in full when the search opens its study).

    >>> check([{"lr": 0.1}]), check("first.jsonl"), check(None)
    ([{'lr': 0.1}], 'first.jsonl', None)
    """
    from tunecb.study.checks import Invalid

    if value is None or isinstance(value, (str, Path)):
        return str(value) if value is not None else None
    if isinstance(value, (list, tuple)) and all(isinstance(v, dict) for v in value):
        return [dict(v) for v in value]
    raise Invalid(
        "must be a .jsonl or .csv file of configurations, or a list of dicts of parameters"
    )


def read(source: str | list[dict[str, Any]]) -> list[Configuration]:
    """The configurations ``source`` gives, in order; raises :class:`ConfigError` (naming
    the file and line) for a missing or empty file, a line that is not an object of
    parameters, or a value that is not a number, a string, a bool or null."""
    if not isinstance(source, str):
        found = [Configuration(dict(p), f"enqueue= item {i}") for i, p in enumerate(source, 1)]
        where = "enqueue="
    else:
        path = Path(source).expanduser()
        where = f"--enqueue {source}"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read it ({exc.strerror}); give {_FIX}") from exc
        rows = _csv(text, where) if path.suffix.lower() == ".csv" else _jsonl(text, where)
        found = [Configuration(params, f"{where} line {n}") for n, params in rows]
    if not found:
        raise ConfigError(f"{where}: no configurations in it; give {_FIX}")
    for item in found:
        _check_values(item)
    return found


def _jsonl(text: str, where: str) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            params = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where} line {n}: not JSON ({exc.msg}); give {_FIX}") from None
        if not isinstance(params, dict) or not params:
            raise ConfigError(f"{where} line {n}: not an object of parameters; give {_FIX}")
        rows.append((n, params))
    return rows


def _csv(text: str, where: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(text.splitlines())
    rows = []
    for row in reader:
        n = reader.line_num
        if None in row or any(v is None for v in row.values()):
            raise ConfigError(f"{where} line {n}: not one value per column; give {_FIX}")
        params = {k.strip(): _cell(v) for k, v in row.items() if v.strip() != ""}
        if params:
            rows.append((n, params))
    return rows


def _cell(text: str) -> Any:
    """A CSV cell as the value it spells: an int, a float, a bool, else the text.

    >>> [_cell(t) for t in ("16", "1e-3", "true", "relu")]
    [16, 0.001, True, 'relu']
    """
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _check_values(item: Configuration) -> None:
    for name, value in item.params.items():
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise ConfigError(
                f"{item.where}: {name}={value!r} is not a number, a string, a bool or null; "
                "give the value the builder's suggest_* would return"
            )
