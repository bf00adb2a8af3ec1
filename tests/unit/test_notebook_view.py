"""The notebook's final view ranks the run's trials as the report does (best first, values
at 4 significant digits, equal values by trial number, and says so), not in finishing order."""

from __future__ import annotations

import pytest

from tunecb.execution.events import SearchStarted, TrialFinished
from tunecb.oracle.outcome import TrialOutcome

pytest.importorskip("IPython")


def outcome(number: int, state: str, value: float | None) -> TrialOutcome:
    reason = {"COMPLETE": "completed", "PRUNED": "pruned"}.get(state, "failed")
    return TrialOutcome(number, state, value, 1, 2, reason, None, None, 0.1, 10, 0, "none")


def started(direction: str) -> SearchStarted:
    return SearchStarted(
        name="s", storage="j", study_dir="d", created=True, done=0, best_value=None,
        best_number=None, n_trials=5, monitor="val_accuracy", direction=direction, epochs=2,
        mode="inline", workers=1,
    )  # fmt: skip


class Shown:
    """What the cell shows: the last page the view gave it."""

    page = ""

    def update(self, html) -> None:
        self.page = html.data


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_the_final_view_ranks_trials_best_first(direction):
    from tunecb.session.display import NotebookView

    view = NotebookView()
    view.handle = Shown()  # outside a kernel IPython's display() gives no handle
    view(started(direction))
    finished = [
        outcome(0, "PRUNED", 0.5), outcome(1, "COMPLETE", 0.123456789), outcome(2, "FAIL", None),
        outcome(3, "COMPLETE", 0.9), outcome(4, "COMPLETE", 0.123456789),
    ]  # fmt: skip
    for o in finished:
        view(TrialFinished(o, worker="w"))
    order = [int(line.split(":")[0].split()[1]) for line in view.ranked()]
    best_first = [3, 1, 4] if direction == "maximize" else [1, 4, 3]
    assert order == [*best_first, 0, 2]  # then PRUNED, then the rest; ties by trial number
    view.summary(None)
    page = view.handle.page
    assert "0.1235" in page and "0.123456789" not in page
    assert "equal values ranked by trial number" in page
    assert page.index("trial 3:") < page.index("trial 0:")
