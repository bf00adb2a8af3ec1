"""What ``tunecb.search()`` returns: the search's summary, and the study it left on disk.

>>> result = tunecb.search("studies/digits.py", n_trials=4)   # doctest: +SKIP
>>> result.best_value, result.best_params                     # doctest: +SKIP
(0.9844, {'layers': 2, 'units': 97, 'dropout': 0.21, 'lr': 0.0031})
>>> model = result.load_best()                                # doctest: +SKIP
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunecb.wording import short

if TYPE_CHECKING:
    import keras
    import optuna
    import pandas

    from tunecb.execution.events import SearchEnded


@dataclass(frozen=True)
class SearchResult:
    """The end of a search: its summary (:attr:`summary`), and access to everything the
    results folder holds (the ranked trials, the Optuna study, the best model)."""

    summary: SearchEnded
    storage: str | None = None  # the --storage URL, when not the results folder's journal

    @property
    def study_dir(self) -> Path:
        """The results folder: ``results/<study>``."""
        return Path(self.summary.study_dir)

    @property
    def best(self) -> dict[str, Any] | None:
        """The best trial (``number``, ``value``, ``best_epoch``, ``params``,
        ``checkpoint``), or ``None`` when no trial completed."""
        return self.summary.best

    @property
    def best_value(self) -> float | None:
        return None if self.best is None else self.best["value"]

    @property
    def best_params(self) -> dict[str, Any] | None:
        return None if self.best is None else dict(self.best["params"])

    @property
    def trials(self) -> pandas.DataFrame:
        """Every trial, ranked best first (as ``tunecb.report``)."""
        from tunecb.reporting.data.records import study_report

        return study_report(self.study_dir, storage=self.storage)

    @property
    def study(self) -> optuna.Study:
        """The Optuna study, for everything Optuna's own API does."""
        from tunecb.reporting.data.records import open_report_study

        return open_report_study(self.study_dir, self.storage)[0]

    def load_best(self, rank: int = 1, **kwargs: Any) -> keras.Model:
        """The best trial's model (or the ``rank``-th best), from its checkpoint."""
        from tunecb.replay.load import load_best

        return load_best(self.study_dir, rank=rank, **kwargs)

    def __repr__(self) -> str:
        s = self.summary
        best = (
            f"best {s.monitor} {self.best_value:.6g} (trial {self.best['number']})"
            if self.best
            else "no completed trial"
        )
        return f"<SearchResult {s.name!r}: {s.done} trials, {best}, {self.study_dir}>"

    def _repr_html_(self) -> str:
        s, b = self.summary, self.best
        rows = [
            ("study", s.name),
            ("results", str(self.study_dir)),
            ("trials", f"{s.done} in the study; this run: "
             + (", ".join(f"{n} {k.lower()}" for k, n in sorted(s.ran.items())) or "none")),
        ]  # fmt: skip
        if b:
            rows += [
                (f"best {s.monitor}", f"{b['value']:.6g} (trial {b['number']}, epoch "
                 f"{b['best_epoch']})"),
                ("best params", ", ".join(f"{k}={_short(v)}" for k, v in b["params"].items())),
            ]  # fmt: skip
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        return f"<table>{body}</table>"


def _short(value: Any) -> str:
    """A parameter value for a person: floats to 4 significant digits.

    >>> _short(0.000123456), _short(64), _short("relu")
    ('0.0001235', '64', 'relu')
    """
    return short(value)
