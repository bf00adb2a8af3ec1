"""Each name tunecb stores on Optuna trials and studies is declared once, in
tunecb.oracle.attrs: no module spells an attribute key as a literal."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tunecb.oracle import attrs
from tunecb.oracle.outcome import TrialOutcome

PACKAGE = Path(__file__).resolve().parents[2] / "tunecb"
DECLARED = {v for k, v in vars(attrs).items() if k.isupper() and isinstance(v, str)}
# The calls that read or write an Optuna user or system attribute, by their first argument.
SETTERS = ("set_user_attr", "set_trial_user_attr", "set_trial_system_attr", "set_system_attr")
MAPPINGS = ("user_attrs", "system_attrs")
# ... and the names the code gives a trial's user attributes once it holds them.
HELD = ("attrs",)


def _holds_attrs(node: ast.AST) -> bool:
    """``t.user_attrs``, ``t.system_attrs``, ``source.attrs`` or a local ``attrs``."""
    if isinstance(node, ast.Attribute):
        return node.attr in MAPPINGS or node.attr in HELD
    return isinstance(node, ast.Name) and node.id in HELD


def _literal_keys(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, key)`` of every attribute key written as a string literal."""
    found = []
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func, args = node.func, node.args
            if func.attr in SETTERS and args:
                key = args[1] if func.attr.startswith("set_trial_") and len(args) > 1 else args[0]
            elif func.attr == "get" and args and _holds_attrs(func.value):
                key = args[0]
        elif isinstance(node, ast.Subscript) and _holds_attrs(node.value):
            key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            found.append((node.lineno, key.value))
    return found


def test_the_scan_finds_a_literal_key():
    code = 't.user_attrs.get("stop_reason"); s.set_user_attr("monitor", 1); t.system_attrs["x"]'
    assert [k for _, k in _literal_keys(ast.parse(code))] == ["stop_reason", "monitor", "x"]
    assert _literal_keys(ast.parse("t.user_attrs.get(STOP_REASON); d.get('x')")) == []
    held = 'attrs.get("seed"); source.attrs["n_params"]'
    assert [k for _, k in _literal_keys(ast.parse(held))] == ["seed", "n_params"]


@pytest.mark.parametrize(
    "path",
    sorted(p for p in PACKAGE.rglob("*.py") if p.name != "attrs.py"),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_no_module_spells_an_attribute_key(path):
    found = _literal_keys(ast.parse(path.read_text(encoding="utf-8")))
    assert not found, f"{path.relative_to(PACKAGE.parent)}: import these from oracle.attrs: {found}"


def test_the_outcome_is_stored_under_declared_keys():
    outcome = TrialOutcome(
        number=1, state="COMPLETE", value=0.5, best_epoch=1, epochs_run=2,
        stop_reason=attrs.COMPLETED, error=None, checkpoint=None, duration_s=1.0,
        n_params=3, seed=None, lr_schedule="none",
    )  # fmt: skip
    assert set(outcome.attrs()) <= DECLARED


def test_stored_strings_never_change():
    # Studies already written hold these; renaming one would hide their trials' meaning.
    assert (attrs.STOP_REASON, attrs.WORKER, attrs.RETRY_HISTORY, attrs.BEST_VALUE) == (
        "stop_reason", "worker", "retry_history", "best_value",
    )  # fmt: skip
    assert attrs.STOP_REASONS == ("completed", "early_stopped", "pruned", "nan", "failed",
                                  "worker_died", "interrupted", "discarded",
                                  "warm_start", "infeasible", "killed", "time_limit",
                                  "paused")  # fmt: skip
    assert [s.name for s in attrs.FINISHED] == ["COMPLETE", "PRUNED", "FAIL"]
