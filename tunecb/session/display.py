"""Live progress of ``tunecb.search()``, suited to where it runs.

- a Jupyter kernel: an HTML view updated in place (``IPython.display``, throttled);
- a terminal: the live view the CLI shows too (trials, times, best value, each running
  trial's epoch; :mod:`tunecb.progress`);
- anything else (a script whose output goes to a log): one plain line per finished trial;
- ``quiet=True``: nothing.

>>> choose(quiet=True) is None
True
"""

from __future__ import annotations

import html
import sys
import time
from typing import Any

from tunecb.progress.live import LiveState, clock
from tunecb.progress.printers import make_printer
from tunecb.wording import short

Listener = Any  # a callable taking one event, with close()


def in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel (not a terminal IPython)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
    except Exception:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def choose(quiet: bool = False, verbose: Any = 0) -> Listener | None:
    """The progress display for this place, or ``None`` when quiet."""
    if quiet:
        return None
    if in_notebook():
        return NotebookView()
    return make_printer("text", False, verbose, write=_say, stream=sys.stdout)


def _say(text: str) -> None:
    """A progress line, on stdout, flushed."""
    print(text, flush=True)


class NotebookView:
    """An HTML view of the search in the notebook's output, updated in place."""

    MIN_INTERVAL_S = 0.5

    def __init__(self) -> None:
        from IPython.display import HTML, display

        self._html = HTML
        self.state = LiveState()
        self.lines: list[str] = []
        self.handle = display(HTML("<i>tunecb: starting…</i>"), display_id=True)
        self.shown = 0.0
        self.finished: list[Any] = []  # this run's trial outcomes
        self.maximize = True

    def __call__(self, event: object) -> None:
        from tunecb.execution.events import SearchStarted, TrialFinished

        self.state.update(event)
        if isinstance(event, SearchStarted):
            self.lines += [f"note: {n}" for n in event.notes]
            self.maximize = event.direction == "maximize"
        if isinstance(event, TrialFinished):
            o = event.outcome
            self.lines.append(self._trial_line(o))
            self.finished.append(o)
        now = time.monotonic()
        due = now - self.shown >= self.MIN_INTERVAL_S
        if due or isinstance(event, SearchStarted | TrialFinished):
            self.shown = now
            self.handle.update(self._html(self.render()))

    def _trial_line(self, o: Any) -> str:
        line = f"trial {o.number}: {o.state.lower()}, {self.state.monitor} {short(o.value)}, "
        return line + f"{o.epochs_run} epochs ({o.stop_reason})"

    def ranked(self) -> list[str]:
        """This run's trials best first, in the report's order (:func:`rank_key`)."""
        from tunecb.oracle.ranking import rank_key

        def key(o: Any) -> tuple:
            record = {"state": o.state, "value": o.value, "trial": o.number}
            return rank_key(record, self.maximize)

        return [self._trial_line(o) for o in sorted(self.finished, key=key)]

    def render(self, final: bool = False) -> str:
        s = self.state
        done, total = s.done, s.n_trials
        share = min(1.0, done / total) if total else 0.0
        eta = s.eta()
        best = (
            f"best {s.monitor} <b>{short(s.best_value)}</b> (trial {s.best_number})"
            if s.best_number is not None and s.best_value is not None
            else "best -"
        )
        bar = (
            "<div style='width:240px;height:10px;background:#ddd;display:inline-block'>"
            f"<div style='width:{share * 100:.0f}%;height:10px;background:#4a8'></div></div>"
        )
        head = (
            f"{bar} {done}/{total or '?'} trials · {clock(time.monotonic() - s.started)} "
            f"elapsed · remaining {clock(eta) if eta is not None else '-'} · {best}"
        )
        running = [
            f"trial {n}: epoch {r.epoch}/{r.epochs or '?'}"
            + ("" if r.value is None else f", {s.monitor} {r.value:.4g}")
            for n, r in sorted(s.running.items())
        ]
        if final:  # the search is over: its trials ranked, as the report does
            ranked = self.ranked()
            shown = ranked[:10]
            more = len(ranked) - len(shown)
            recent = [*shown, *([f"{more} more: result.trials"] if more > 0 else [])]
            ties = "; equal values ranked by trial number" if len(ranked) > 1 else ""
            head += f"<br>this run's trials, best first{ties}:"
        else:
            recent = [*running, *self.lines[-8:][::-1]]
        items = "".join(f"<li>{html.escape(x)}</li>" for x in recent)
        return f"<div style='font-family:monospace'>{head}<ul>{items}</ul></div>"

    def summary(self, s: Any) -> None:
        self.handle.update(self._html(self.render(final=True)))

    def close(self) -> None:
        """Nothing to release: the last view stays in the cell's output."""
