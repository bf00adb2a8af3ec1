"""A search's parent run: opened by the launcher before any trial (failing fast when the
tracker is unreachable), its id written on the study for every worker; at the end, the
study's best and HTML report on it, and the gap (finished trials whose child run is not
complete) named with the command that fills it. ``tunecb sync`` fills it from tunecb's
records (:func:`sync_study`).

Example::

    tracking = SearchTracking.start(settings, study)  # None without --mlflow
    ...
    lines = tracking.end(study, study_dir, write_report)
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from tunecb.oracle import attrs as keys
from tunecb.results import StudyDir
from tunecb.study.settings import Settings
from tunecb.tracking._base import PARENT_RUN, TRIAL_RUN
from tunecb.tracking.records import trial_record
from tunecb.wording import plural

log = logging.getLogger("tunecb")

ReportWriter = Callable[[Path], None]  # writes the study's HTML report to the path given


class Connecting:
    """The tracker's client (``import mlflow`` for a non-HTTP URI) and its first requests,
    in a thread started with the search; :meth:`join` waits for it (before the first
    trial) and opens the parent run."""

    def __init__(self, uri: str, experiment: str) -> None:
        self.uri, self.experiment = uri, experiment
        self._tracker: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._open, name="tunecb-connect", daemon=True)
        self._thread.start()

    def _open(self) -> None:
        from tunecb.tracking.mlflow_tracker import MlflowTracker

        try:
            self._tracker = MlflowTracker.open(self.uri, self.experiment)
        except BaseException as exc:  # re-raised in the caller's thread by join()
            self._error = exc

    def join(self, study: optuna.Study) -> SearchTracking:
        """The study's parent run; raises :class:`~tunecb.tracking._base.TrackingError`
        when the tracker cannot be reached (its requests time out within seconds)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return SearchTracking.opened(self._tracker, study)


class SearchTracking:
    """The parent run of one study in one tracker."""

    def __init__(self, tracker: Any, parent: str) -> None:
        self.tracker, self.parent = tracker, parent

    @classmethod
    def start(cls, settings: Settings, study: optuna.Study) -> SearchTracking | None:
        """Open the tracker and the study's parent run (``None`` without ``mlflow``);
        raises :class:`~tunecb.tracking._base.TrackingError` when it cannot be reached."""
        connecting = cls.connect(settings, study.study_name if study else settings.name)
        return None if connecting is None else connecting.join(study)

    @classmethod
    def connect(cls, settings: Settings, name: str) -> Connecting | None:
        """Start connecting in the background (``None`` without ``mlflow``)."""
        if not settings.mlflow:
            return None
        return Connecting(settings.mlflow, settings.mlflow_experiment or name)

    @classmethod
    def open(cls, uri: str, experiment: str, study: optuna.Study) -> SearchTracking:
        from tunecb.tracking.mlflow_tracker import MlflowTracker

        return cls.opened(MlflowTracker.open(uri, experiment), study)

    @classmethod
    def opened(cls, tracker: Any, study: optuna.Study) -> SearchTracking:
        """The study's parent run on an open tracker (its id noted on the study)."""
        from tunecb.tracking._base import TrackingError
        from tunecb.tracking.mlflow_tracker import reason

        uri, experiment = tracker.uri, tracker.experiment
        previous = study.user_attrs.get(PARENT_RUN)
        try:
            parent = tracker.start_search(study.study_name, previous)
        except Exception as exc:
            raise TrackingError(
                f"MLflow tracking URI {tracker.shown!r} refused the search's run: "
                f"{reason(exc, uri)}"
            ) from None
        record = {"uri": tracker.shown, "experiment": experiment, "run_id": parent}
        if previous != record:
            study.set_user_attr(PARENT_RUN, record)
        return cls(tracker, parent)

    def end(
        self, study: optuna.Study, study_dir: StudyDir, report: ReportWriter | None
    ) -> list[str]:
        """The best and the report on the parent run; the lines that name the gap."""
        from tunecb.tracking.mlflow_tracker import reason

        shown = self.tracker.shown
        try:
            self._finish(study, report)
            missing = sorted(_counted(study) - self.tracker.recorded(self.parent))
        except Exception as exc:
            why = reason(exc, self.tracker.uri)
            return [
                f"MLflow {shown!r} failed at the end of the search ({why}): its record may "
                f"miss trials; when it is back: tunecb sync {study_dir.root} --mlflow {shown}"
            ]
        if not missing:
            return []
        listed = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        return [
            f"MLflow {shown!r} misses {plural(len(missing), 'trial')} ({listed}); fill the gap "
            f"from this study's records with: tunecb sync {study_dir.root} --mlflow {shown}"
        ]

    def abort(self, exc: BaseException) -> None:
        """The search stopped on ``exc``: the parent run and its running children end
        ``KILLED`` (Ctrl-C, SIGTERM) or ``FAILED``; a tracker that fails is only logged."""
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        try:
            self.tracker.abort(self.parent, status)
        except Exception as error:
            log.debug("MLflow %s: the run not ended %s: %s", self.tracker.shown, status, error)

    def _finish(self, study: optuna.Study, report: ReportWriter | None) -> None:
        best = _best(study)
        if report is None:
            self.tracker.end_search(self.parent, best, None)
            return
        with tempfile.TemporaryDirectory(prefix="tunecb-report-") as folder:
            path = Path(folder) / "report.html"
            try:
                report(path)
            except Exception as exc:  # the report is a nicety: the run still ends
                log.warning("cannot write the HTML report for MLflow: %s", exc)
            self.tracker.end_search(self.parent, best, path if path.exists() else None)


def sync_study(
    uri: str, experiment: str | None, study: optuna.Study, study_dir: StudyDir,
    report: ReportWriter | None = None,
) -> tuple[int, int]:  # fmt: skip
    """Write every finished trial the tracker misses from tunecb's records, then the best
    and the report: ``(trials written, trials it already had)``."""
    tracking = SearchTracking.open(uri, experiment or study.study_name, study)
    tracker, parent = tracking.tracker, tracking.parent
    have = tracker.recorded(parent)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    written = 0
    for number in sorted(_counted(study) - have):
        trial, strays = trials[number], tracker.strays(parent, number)
        # a run created on the server whose answer was lost with the connection: a stray
        noted = trial.user_attrs.get(TRIAL_RUN) or (strays[0] if strays else None)
        for stray in strays:
            if stray != noted:
                tracker.discard(stray)
        run_id = tracker.start_trial(parent, number, noted)
        logged = tracker.logged_epochs(run_id)
        tracker.finish_trial(run_id, trial_record(study_dir, number, trial), logged)
        written += 1
    tracking._finish(study, report)
    return written, len(have)


def _counted(study: optuna.Study) -> set[int]:
    """The finished trials a record must hold (a dead attempt's run is its rerun's)."""
    return {
        t.number
        for t in study.get_trials(deepcopy=False, states=keys.FINISHED)
        if t.user_attrs.get(keys.STOP_REASON) not in keys.NOT_COUNTED
    }


def _best(study: optuna.Study) -> dict[str, Any] | None:
    try:
        best = study.best_trial
    except ValueError:
        return None
    return {"number": best.number, "value": best.value, "params": best.params}
