"""A search's parent run: opened by the launcher before any trial (failing fast when the
tracker is unreachable), its id written on the study for every worker; at the end, the
study's best and HTML report on it, and the gap (finished trials whose child run is not
complete) named with the command that fills it. ``tunecb sync`` fills it from tunecb's
records (:func:`sync_study`).

With ``--mlflow`` and ``--wandb`` both, :class:`Searches` holds the two.

Example::

    tracking = SearchTracking.start(settings, study)  # None without --mlflow, --wandb
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
from tunecb.tracking._base import MLFLOW, Kind, close_tracker
from tunecb.tracking.records import trial_record
from tunecb.tracking.targets import Target, targets
from tunecb.wording import plural

log = logging.getLogger("tunecb")

ReportWriter = Callable[[Path], None]  # writes the study's HTML report to the path given


class Connecting:
    """The trackers' clients (``import mlflow`` for a non-HTTP URI; W&B's tracker process)
    and their first requests, in threads started with the search; once the study is open
    (:meth:`opened`), each thread opens its parent run too, so that the launcher's work
    until the first trial overlaps it. :meth:`join` waits for them (before the first
    trial) and raises what failed."""

    def __init__(self, found: list[Target]) -> None:
        self._trackers: list[Any] = [None] * len(found)
        self._parents: list[Callable[[], str] | None] = [None] * len(found)
        self._error: BaseException | None = None
        self._study = threading.Event()  # set by opened(), or cancel()
        self._name, self._previous, self._cancelled = "", [None] * len(found), False
        self._threads = [
            threading.Thread(target=self._open, args=(i, target), name="tunecb-connect",
                             daemon=True)
            for i, target in enumerate(found)
        ]  # fmt: skip
        self._kinds = [target.kind for target in found]
        for thread in self._threads:
            thread.start()

    def _open(self, index: int, target: Target) -> None:
        try:
            tracker = self._trackers[index] = target.tracker(check=True)
        except BaseException as exc:  # re-raised in the caller's thread by join()
            self._error = exc
            return
        self._study.wait()
        if self._cancelled:
            close_tracker(tracker)
            return
        try:
            parent = tracker.start_search(self._name, self._previous[index])
            self._parents[index] = lambda: parent
        except Exception as exc:  # raised by join(), as a refusal of the search's run
            self._parents[index] = _raiser(exc)

    def opened(self, study: optuna.Study) -> None:
        """The study is open: each tracker opens (or reopens) its parent run now."""
        if not self._study.is_set():
            self._name = study.study_name
            self._previous = [study.user_attrs.get(kind.parent_attr) for kind in self._kinds]
            self._study.set()

    def cancel(self) -> None:
        """The search did not start: close what was opened (its threads end)."""
        if not self._study.is_set():
            self._cancelled = True
            self._study.set()

    def failed(self) -> BaseException | None:
        """What failed already (a server that refused the connection), without waiting."""
        return self._error

    def join(self, study: optuna.Study) -> SearchTracking | Searches:
        """The study's parent runs; raises :class:`~tunecb.tracking._base.TrackingError`
        when a tracker cannot be reached (its requests time out within seconds)."""
        self.opened(study)
        for thread in self._threads:
            thread.join()
        if self._error is not None:
            for tracker in self._trackers:
                close_tracker(tracker)
            raise self._error
        try:
            opened = [
                SearchTracking.opened(tracker, study, started)
                for tracker, started in zip(self._trackers, self._parents, strict=True)
            ]
        except BaseException:
            for tracker in self._trackers:
                close_tracker(tracker)
            raise
        return opened[0] if len(opened) == 1 else Searches(opened)


def _raiser(exc: Exception) -> Callable[[], str]:
    def again() -> str:
        raise exc

    return again


class SearchTracking:
    """The parent run of one study in one tracker."""

    def __init__(self, tracker: Any, parent: str) -> None:
        self.tracker, self.parent = tracker, parent

    @classmethod
    def start(cls, settings: Settings, study: optuna.Study) -> SearchTracking | Searches | None:
        """Open the trackers and the study's parent runs (``None`` without ``mlflow`` or
        ``wandb``); raises :class:`~tunecb.tracking._base.TrackingError` when one cannot
        be reached."""
        connecting = cls.connect(settings, study.study_name if study else settings.name)
        return None if connecting is None else connecting.join(study)

    @classmethod
    def connect(cls, settings: Settings, name: str) -> Connecting | None:
        """Start connecting in the background (``None`` without ``mlflow``, ``wandb``)."""
        found = targets(settings, name)
        return Connecting(found) if found else None

    @classmethod
    def open(
        cls, uri: str, experiment: str, study: optuna.Study, kind: Kind = MLFLOW
    ) -> SearchTracking:
        tracker = Target(kind, uri, experiment).tracker(check=True)
        try:
            return cls.opened(tracker, study)
        except BaseException:
            close_tracker(tracker)
            raise

    @classmethod
    def opened(
        cls, tracker: Any, study: optuna.Study, started: Callable[[], str] | None = None
    ) -> SearchTracking:
        """The study's parent run on an open tracker (its id noted on the study;
        ``started``: its id, or its refusal, from a run opened already)."""
        from tunecb.tracking._base import TrackingError
        from tunecb.tracking.mlflow_tracker import reason

        uri, experiment, kind = tracker.uri, tracker.experiment, tracker.kind
        previous = study.user_attrs.get(kind.parent_attr)
        try:
            parent = started() if started else tracker.start_search(study.study_name, previous)
        except Exception as exc:
            where = "tracking URI" if kind is MLFLOW else "project"
            raise TrackingError(
                f"{kind.label} {where} {tracker.shown!r} refused the search's run: "
                f"{reason(exc, uri)}"
            ) from None
        record = {"uri": tracker.shown, "experiment": experiment, "run_id": parent}
        if previous != record:
            study.set_user_attr(kind.parent_attr, record)
        return cls(tracker, parent)

    def end(
        self, study: optuna.Study, study_dir: StudyDir, report: ReportWriter | None
    ) -> list[str]:
        """The best and the report on the parent run; the lines that name the gap."""
        from tunecb.tracking.mlflow_tracker import reason

        shown, kind = self.tracker.shown, self.tracker.kind
        sync = f"tunecb sync {study_dir.root} {kind.flag} {shown}"
        try:
            self._finish(study, report)
            missing = sorted(_counted(study) - _recorded(self.tracker, self.parent, study))
        except Exception as exc:
            why = reason(exc, self.tracker.uri)
            return [
                f"{kind.label} {shown!r} failed at the end of the search ({why}): its record "
                f"may miss trials; when it is back: {sync}"
            ]
        if not missing:
            return []
        listed = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        return [
            f"{kind.label} {shown!r} misses {plural(len(missing), 'trial')} ({listed}); fill "
            f"the gap from this study's records with: {sync}"
        ]

    def abort(self, exc: BaseException) -> None:
        """The search stopped on ``exc``: the parent run and its running children end
        ``KILLED`` (Ctrl-C, SIGTERM) or ``FAILED``; a tracker that fails is only logged."""
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        try:
            self.tracker.abort(self.parent, status)
        except Exception as error:
            label, shown = self.tracker.kind.label, self.tracker.shown
            log.debug("%s %s: the run not ended %s: %s", label, shown, status, error)

    def close(self) -> None:
        """The search is over: the tracker's process (W&B's) flushes and stops."""
        close_tracker(self.tracker)

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
                log.warning("cannot write the HTML report for %s: %s", self.tracker.kind.label, exc)
            self.tracker.end_search(self.parent, best, path if path.exists() else None)


class Searches:
    """The parent runs of one study in several trackers (``--mlflow`` and ``--wandb``)."""

    def __init__(self, parts: list[SearchTracking]) -> None:
        self.parts = parts

    def end(
        self, study: optuna.Study, study_dir: StudyDir, report: ReportWriter | None
    ) -> list[str]:
        return [line for part in self.parts for line in part.end(study, study_dir, report)]

    def abort(self, exc: BaseException) -> None:
        for part in self.parts:
            part.abort(exc)

    def close(self) -> None:
        for part in self.parts:
            part.close()


def sync_study(
    uri: str, experiment: str | None, study: optuna.Study, study_dir: StudyDir,
    report: ReportWriter | None = None, kind: Kind = MLFLOW,
) -> tuple[int, int]:  # fmt: skip
    """Write every finished trial the tracker misses from tunecb's records, then the best
    and the report: ``(trials written, trials it already had)``."""
    tracking = SearchTracking.open(uri, experiment or study.study_name, study, kind)
    try:
        tracker, parent = tracking.tracker, tracking.parent
        have = _recorded(tracker, parent, study)
        trials = {t.number: t for t in study.get_trials(deepcopy=False)}
        written = 0
        for number in sorted(_counted(study) - have):
            trial, strays = trials[number], tracker.strays(parent, number)
            # a run created on the server whose answer was lost with the connection: a stray
            noted = trial.user_attrs.get(kind.trial_attr) or (strays[0] if strays else None)
            for stray in strays:
                if stray != noted:
                    tracker.discard(stray)
            run_id = tracker.start_trial(parent, number, noted)
            logged = tracker.logged_epochs(run_id)
            tracker.finish_trial(run_id, trial_record(study_dir, number, trial), logged)
            if kind.recorded_attr:  # a tracker that cannot be asked (W&B): noted here
                study.set_user_attr(kind.recorded_key(number), True)
            written += 1
        tracking._finish(study, report)
    finally:
        tracking.close()
    return written, len(have)


def _recorded(tracker: Any, parent: str, study: optuna.Study) -> set[int]:
    """The trials whose run is complete: the tracker's answer, or (a tracker that cannot
    be asked, W&B) what the trials noted."""
    kind = tracker.kind
    if kind.recorded_attr is None:
        return tracker.recorded(parent)
    noted = study.user_attrs
    return {
        t.number
        for t in study.get_trials(deepcopy=False)
        if noted.get(kind.recorded_key(t.number)) or t.user_attrs.get(kind.recorded_attr)
    }


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
