"""Run one trial: seed, build, fit with our callbacks, classify the outcome, record it.

The only module that trains. The search hands it an ``optuna.Trial`` and gets back a
:class:`TrialOutcome`; telling Optuna is the search's job.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import optuna

from tunecb import interrupts
from tunecb.errors import DiskFull, TunecbError, describe_error
from tunecb.oracle import attrs as keys
from tunecb.oracle import space
from tunecb.oracle.deaths import rss_of
from tunecb.oracle.outcome import COMPLETE, FAIL, PRUNED, TrialOutcome
from tunecb.oracle.pruning import finished_epochs
from tunecb.results import BackupDir, StudyDir, write_json
from tunecb.storage.reconnect import lost_for_good
from tunecb.study import schedules
from tunecb.study.data import Data
from tunecb.study.data_checks import check_input_shape, data_function
from tunecb.study.declaration import LoadedStudy
from tunecb.study.samplers_pruners import first_stop
from tunecb.study.settings import Settings
from tunecb.tracking.trial import TrialTracking
from tunecb.training import backup as backups
from tunecb.training import (
    building,
    constraints,
    fast_fit,
    fit_setup,
    grappler,
    objectives,
    trial_env,
)
from tunecb.training import tensorboard as tblogs
from tunecb.training.callbacks import EpochNotice, TrialCallbacks, make_callbacks
from tunecb.training.epoch_seed import EpochSeed
from tunecb.training.kept_models import Kept, KeptModels, kept_bytes
from tunecb.training.memory_limit import MemoryLimit
from tunecb.training.pareto_pruning import ParetoPruning
from tunecb.training.time_limit import TimeLimit
from tunecb.training.variables import put_back, snapshot, variables_bytes

log = logging.getLogger("tunecb")

KEEP_BELOW = 0.75
"""With ``--worker-memory``, a worker keeps paused trials' models only below this share of it."""

EpochHook = Callable[[int, int, float | None], None]
"""``on_epoch(trial_number, epoch, monitored_value)`` after each epoch (1 is the first; the
value ``None`` when not finite)."""


def _parts(fingerprint: dict) -> str:
    return "; ".join(f"{k} {v}" for k, v in (fingerprint.get("parts") or {}).items())


@dataclass
class _Fit:
    """How one trial's fit ended: its state and stop reason, its callbacks (``None`` when
    it failed before they were made), and an error that must stop the search."""

    state: str = FAIL
    reason: str = keys.FAILED
    cbs: TrialCallbacks | None = None
    fatal: BaseException | None = None
    model: keras.Model | None = None  # the trial's model, once built (or taken from memory)


def _write_best(cbs: TrialCallbacks, number: int) -> None:
    """Write the best checkpoint's pending epoch (lazy: see ``BestCheckpoint``); a failure
    to write it costs only the file."""
    try:
        cbs.checkpoint.flush()
    except Exception as exc:  # a full disk too: the trial is recorded all the same
        log.warning("trial %d: cannot write its best checkpoint %s: %s",
                    number, cbs.checkpoint.path, trial_env.error_text(exc))  # fmt: skip


class TrialRunner:
    """Runs trials of one study in this process, with data loaded once.

    Example::

        runner = TrialRunner(loaded, settings, StudyDir(path), Data.load(loaded))
        outcome = runner.run(study.ask())
    """

    def __init__(
        self,
        loaded: LoadedStudy,
        settings: Settings,
        study_dir: StudyDir,
        data: Data,
        on_epoch: EpochHook | None = None,
    ) -> None:
        # TensorFlow warns about retracing after a few models in one process: expected in a
        # search (every trial builds a new model), so not worth a line on the terminal.
        tf_logger = logging.getLogger("tensorflow")
        if not log.isEnabledFor(logging.DEBUG):
            tf_logger.setLevel(max(tf_logger.level, logging.ERROR))
        self.loaded = loaded
        self.settings = settings
        self.study_dir = study_dir
        self.data = data
        self.on_epoch = on_epoch
        self.tracking = TrialTracking.from_settings(settings)  # --mlflow; None: off
        self.memory_limit_mb: float | None = None  # --worker-memory (its worker sets it)
        self._space: space.Guard | None = None  # the running trial's suggestions, checked
        self._started = time.monotonic()  # when the running trial started (run() resets it)
        if settings.tensorboard:
            tblogs.require(str(keras.backend.backend()))
        self.data_print = data.fingerprint()
        self._data_checked = False
        self._labels: tuple[tuple[float, float] | None] | None = None  # computed once
        # The models of the trials this worker paused (promotion pruner), resumed from here
        # by this worker without a build, a load and a trace (tunecb.training.kept_models)
        self.kept = KeptModels.from_env()
        # (epochs, variables, early stopping's best weights) at the running trial's pause
        self._paused: tuple[int, list, list | None] | None = None
        self._in_memory = False  # the running trial resumes a kept model

    def run(self, trial: optuna.Trial, seed: int | None = None) -> TrialOutcome:
        """Train one trial (with Keras seed ``seed``, else the trial's own: see
        :func:`.trial_env.trial_seed`). Raises :class:`TunecbError` (after recording the trial) when
        the study itself is broken; any other error only fails this trial."""
        number = trial.number
        start, started = time.perf_counter(), time.time()
        self._started = time.monotonic()  # --trial-timeout counts from here (building too)
        # A configuration's attempts (a rerun, a continuation of a paused trial) share its
        # first attempt's seed, so one resumed from its backup goes on as it would have.
        first = backups.origin(trial)
        seed = trial_env.trial_seed(self.settings.seed, first) if seed is None else seed
        folder, board = self._prepare(trial, seed)
        guarded = isinstance(trial, optuna.Trial)  # not a FixedTrial (tunecb rerun)
        self._space = space.guard(trial, str(self.study_dir.root)) if guarded else None
        try:
            schedule = self._schedule(trial)
        except space.Refused as exc:  # a searched lr_schedule's choices changed
            schedule = self.settings.lr_schedule
            self._space.refused = exc  # type: ignore[union-attr]  # raised in _fit
        outcome = dict(
            number=number, value=None, best_epoch=None, epochs_run=0, error=None,
            checkpoint=None, n_params=None, seed=seed, lr_schedule=schedule.name,
            resumed_from_epoch=None, constraint=None, objectives=None,
        )  # fmt: skip
        self._properties: dict[str, float] = {}
        backup = self.study_dir.backup(first)
        kept = self._take_kept(trial, first, backup)
        self._paused, self._in_memory = None, kept is not None
        fit = self._fit(trial, schedule, board, backup, outcome, kept)
        if fit.reason != keys.PAUSED:  # paused: its continuation resumes from the backup
            backups.discard(backup.folder)  # the trial ended: nothing to resume
        elif fit.model is not None and self._paused is not None and self._room():
            epochs, values, best = self._paused  # and, here, from memory
            size = kept_bytes(values) + variables_bytes(best or [])
            self.kept.put(Kept(fit.model, values, first, number, epochs, size,
                               dict(self._properties), best))  # fmt: skip
        self._paused = None
        state, reason = self._conclude(fit, outcome)
        result = TrialOutcome(
            state=state,
            stop_reason=reason,
            duration_s=round(time.perf_counter() - start, 3),
            **outcome,
        )
        if board is not None:
            self._write_session(board, trial, result, started)
        self.record(trial, result, folder)
        if self.tracking is not None:
            self.tracking.trial_ended(trial, result, self.study_dir)
        if fit.fatal is not None:
            raise fit.fatal
        return result

    def holds(self, paused: int) -> bool:
        """Whether this worker keeps paused trial ``paused``'s model in memory (it prefers
        to resume those: :func:`tunecb.oracle.promotions.next_continuation`)."""
        return self.kept.holds(paused)

    def _room(self) -> bool:
        """Whether this worker may keep one more model: without ``--worker-memory``, yes;
        with it, while its resident memory is below :data:`KEEP_BELOW` of the limit (else
        the kept ones go too: a worker must not be stopped or replaced for a cache)."""
        if self.memory_limit_mb is None:
            return True
        rss = rss_of(os.getpid())
        if rss is None or rss < KEEP_BELOW * self.memory_limit_mb:
            return True
        self.kept.clear()
        return False

    def release(self) -> None:
        """Let the kept models go (the search ended in this worker)."""
        self.kept.clear()

    def _take_kept(self, trial: optuna.Trial, first: int, backup: BackupDir) -> Kept | None:
        """The model kept in memory since this worker paused the trial that ``trial``
        continues, when the backup on disk is still the one written at that pause."""
        if not len(self.kept) or not isinstance(trial, optuna.Trial):
            return None
        system = trial.storage.get_trial_system_attrs(trial._trial_id)
        paused = system.get(keys.PROMOTED_FROM)
        kept = self.kept.take(first, int(paused)) if paused is not None else None
        if kept is None:
            return None
        stamp = backups.fingerprint(trial.params, self.loaded.sha256, self.settings.epochs)
        if not backups.written_at_pause(backup, stamp, kept.paused, kept.epoch):
            return None  # another worker resumed and paused it since: from its backup
        log.debug("trial %d resumes trial %d's model from memory", trial.number, kept.paused)
        return kept

    def can_resume(self, first: int) -> bool:
        """Whether this process sees the backup of the configuration whose first attempt is
        trial ``first`` (a paused one is resumed only where its backup is)."""
        return self.study_dir.backup(first).state.is_file()

    def _prepare(self, trial: optuna.Trial, seed: int) -> tuple[Path, Path | None]:
        """An empty trial folder (and TensorBoard run), the data checked, Keras reset and
        seeded; returns the folder and the TensorBoard run (``None`` without one)."""
        number = trial.number
        folder = self.study_dir.reset_trial(number)
        board = self.study_dir.tensorboard_run(number) if self.settings.tensorboard else None
        if board is not None:
            tblogs.reset_run(board)
        self._check_data(trial)
        trial_env.clear_session()
        keras.utils.set_random_seed(seed)
        return folder, board

    def _schedule(self, trial: optuna.Trial) -> schedules.Schedule:
        """The trial's learning-rate schedule (suggested when the study searches it)."""
        schedule = self.settings.lr_schedule
        if isinstance(schedule, schedules.Searched):
            name = trial.suggest_categorical("lr_schedule", list(schedule.choices))
            schedule = schedules.parse_schedule(name)
        return schedule

    def _fit(
        self, trial: optuna.Trial, schedule: schedules.Schedule, board: Path | None,
        backup: BackupDir, outcome: dict[str, Any], kept: Kept | None = None,
    ) -> _Fit:  # fmt: skip
        """Build (or take the ``kept`` model), resume from the backup if there is one, fit,
        and say how it ended (an error of user code fails only this trial; ``outcome`` gets
        the error text)."""
        s = self.settings
        fit = _Fit()
        try:
            if self._space is not None and self._space.refused is not None:
                raise self._space.refused
            if kept is not None:  # built, checked and traced when the configuration began
                model = fit.model = kept.model
            else:
                model = fit.model = self._build(trial)
                self._note_space(trial)
                building.check_labels(model, trial.number, self.loaded, self._label_range)
                check_input_shape(model, self.data, trial.number, data_function(self.loaded))
            outcome["n_params"] = int(model.count_params())
            if not self._feasible(model, outcome):
                fit.state, fit.reason = PRUNED, keys.INFEASIBLE
                return fit
            fit.cbs = cbs = self._callbacks(trial, schedule, board, backup)
            if s.objectives:  # multi-objective: the Pareto pruner replaces Optuna's
                where = str(self.loaded.path)
                self._properties = (
                    dict(kept.properties) if kept is not None
                    else objectives.measure(model, self.data, s.objectives, where)
                )  # fmt: skip
                cbs.pruning = ParetoPruning(
                    trial, s.objectives, self._properties, self.study_dir.history(trial.number),
                    s.epochs, prune=s.pruner in ("pareto", "promotion"),
                )  # fmt: skip
                cbs.pruning.on_pause = self._pausing(cbs)  # promotion: resumes from there
            cbs.seeder = EpochSeed(outcome["seed"])  # an epoch's data order, also resumed
            resumed = self._resume(model, cbs, trial, kept)
            outcome["resumed_from_epoch"] = resumed or None
            arguments = {**self.data.fit_arguments(s.batch_size), **s.fit_kwargs}
            epochs = self._expected_epochs(trial, cbs, resumed)
            arguments, options = fit_setup.prepare(
                model, s, cbs.as_list(), arguments, expected=epochs,
                seed=outcome["seed"], initial_epoch=resumed, epochs=s.epochs,
            )  # fmt: skip
            try:
                with grappler.applied(options):
                    model.fit(
                        **arguments,
                        epochs=s.epochs,
                        initial_epoch=resumed,
                        callbacks=cbs.as_list(),
                        verbose=s.verbose,
                    )
            except BaseException as exc:  # Ctrl-C, a lost storage, user code: the fit never
                if not isinstance(exc, DiskFull):  # reached on_train_end; keep its best (a
                    _write_best(cbs, trial.number)  # full disk would fail it again: one line)
                raise
            fit.reason = cbs.stop_reason(s.epochs)
            fit.state = {keys.NAN: FAIL, keys.PRUNED: PRUNED, keys.PAUSED: PRUNED}.get(
                fit.reason, COMPLETE
            )
            if fit.reason == keys.TIME_LIMIT:  # COMPLETE with its best so far: say why
                outcome["error"] = f"stopped: the {cbs.time_limit.hit}"
            if fit.reason == keys.NAN:
                outcome["error"] = (
                    f"non-finite loss or {s.monitor} at epoch {cbs.watch.non_finite_epoch}"
                )
        except optuna.TrialPruned:  # the builder or a user callback asked to prune
            fit.state, fit.reason = PRUNED, keys.PRUNED
        except DiskFull:  # as Ctrl-C: the search stops, the trial is queued (backup kept)
            raise
        except space.Refused as exc:  # the search stops; this trial is not counted
            fit.state, fit.reason, fit.fatal = FAIL, keys.DISCARDED, exc
            outcome["error"] = str(exc)
        except TunecbError as exc:
            fit.state, fit.reason, fit.fatal = FAIL, keys.FAILED, exc
            outcome["error"] = str(exc)
        except KeyboardInterrupt as exc:
            if not interrupts.from_code(exc):  # Ctrl-C: the search stops, the trial is queued
                raise
            fit.state, fit.reason = FAIL, keys.FAILED
            outcome["error"] = describe_error(exc, self.loaded.path)
        except BaseException as exc:  # Exception, SystemExit, ...: user code failed
            interrupts.raise_if_interrupted(exc)  # unless a Ctrl-C is behind it: queued
            if lost_for_good(exc):  # the storage is gone (a report, a pruning decision): the
                raise  # worker stops, the trial is left to recovery (execution/loop)
            fit.state, fit.reason = FAIL, keys.FAILED
            outcome["error"] = describe_error(exc, self.loaded.path)
            log.debug("trial %d failed", trial.number, exc_info=True)
        return fit

    def _expected_epochs(self, trial: optuna.Trial, cbs: TrialCallbacks, done: int) -> int:
        """The epochs this fit is expected to train (:func:`fast_fit.expected_epochs`):
        what this study's finished trials trained, at least what it is sure to."""
        study = getattr(trial, "study", None)  # a FixedTrial (tunecb rerun) has none
        sure = _sure_epochs(self.settings.epochs, done, cbs, getattr(study, "pruner", None))
        if done or self.settings.steps_per_execution != "auto":
            return sure  # a resumed fit: its sure epochs (to its next rung, its patience)
        try:
            trained = [] if study is None else finished_epochs(study)
        except Exception as exc:  # a read that fails costs only the estimate
            log.debug("the finished trials' epochs are not known: %s", exc)
            trained = []
        return fast_fit.expected_epochs(self.settings.epochs, sure, trained)

    def _feasible(self, model: keras.Model, outcome: dict[str, Any]) -> bool:
        """Judge the built model by the study's constraints (:mod:`.constraints`); record
        the violation in ``outcome`` (and, when infeasible, why: as its ``error`` text)."""
        verdict = constraints.judge(
            model, max_params=self.settings.max_params,
            constraint=self.loaded.study.constraint_fn, where=str(self.loaded.path),
        )  # fmt: skip
        if verdict is None:
            return True
        outcome["constraint"] = verdict.value
        if not verdict.feasible:
            outcome["error"] = verdict.why
        return verdict.feasible

    def _callbacks(
        self, trial: optuna.Trial, schedule: schedules.Schedule, board: Path | None,
        backup: BackupDir,
    ) -> TrialCallbacks:  # fmt: skip
        """Our callbacks and the user's, with the trial's backup and live-progress notice."""
        s, number = self.settings, trial.number
        user = building.user_callbacks(self.loaded, trial)
        cbs = make_callbacks(
            trial, s, schedule, self.study_dir.checkpoint(number),
            self.study_dir.history(number), user, tensorboard_dir=board,
        )  # fmt: skip
        if self.tracking is not None:
            cbs.user.append(self.tracking.callback(trial))
        if self.memory_limit_mb is not None:  # past it mid-trial: a memory death
            cbs.user.append(MemoryLimit(self.memory_limit_mb))
        stamp = backups.fingerprint(trial.params, self.loaded.sha256, s.epochs)
        cbs.backup = backups.TrialBackup(backup, stamp, number, cbs, s.backup_every)
        if s.trial_timeout is not None or s.epoch_timeout is not None:
            cbs.time_limit = TimeLimit(s.trial_timeout, s.epoch_timeout, self._started)
        cbs.pruning.on_pause = self._pausing(cbs)  # a paused trial resumes from that epoch
        if self.on_epoch is not None:
            hook = self.on_epoch
            cbs.notice = EpochNotice(s.monitor, lambda epoch, value: hook(number, epoch, value))
        return cbs

    def _pausing(self, cbs: TrialCallbacks) -> Callable[[int], None]:
        """What a pause does after ``epochs`` epochs: save the backup (any worker resumes
        from it) and copy the model's variables (this worker resumes from memory)."""

        def pause(epochs: int) -> None:
            cbs.backup.save(epochs)  # type: ignore[union-attr]
            model = cbs.watch.model
            if self.kept.max_models > 0 and self.kept.fits(model):
                stop = cbs.early_stopping
                self._paused = (epochs, snapshot(model), stop.best_weights if stop else None)

        return pause

    def _resume(
        self, model: keras.Model, cbs: TrialCallbacks, trial: optuna.Trial, kept: Kept | None
    ) -> int:
        """Put the trial's backup back, if it has one (the weights from ``kept`` when its
        model is the one that wrote it); the epochs it had done (0: none)."""
        number = trial.number
        values = kept.values if kept is not None else None
        if kept is not None and cbs.early_stopping is not None:
            cbs.early_stopping.kept_best_weights = kept.best_weights
        resumed = backups.restore(
            model, cbs.backup, self.study_dir, number, trial, self.settings.monitor,
            put_back=None if values is None else lambda m: put_back(m, values),
        )  # fmt: skip
        if resumed and cbs.tensorboard is not None:
            cbs.tensorboard.resume_from(self.study_dir.history(number), resumed)
        return resumed

    def _conclude(self, fit: _Fit, outcome: dict[str, Any]) -> tuple[str, str]:
        """Read the result off the callbacks into ``outcome``; the trial's state and stop
        reason (a COMPLETE fit without one finite value fails)."""
        state, reason, cbs = fit.state, fit.reason, fit.cbs
        if cbs is not None and cbs.tensorboard is not None:
            cbs.tensorboard.close()  # fit closes them, unless it raised
        if cbs is not None:  # its best checkpoint is written (on_train_end, or _fit's except)
            outcome["epochs_run"] = cbs.watch.epochs_run
            outcome["value"] = cbs.checkpoint.best
            outcome["best_epoch"] = cbs.checkpoint.best_epoch
        if state == COMPLETE and outcome["value"] is None:
            state, reason = FAIL, keys.NAN
            outcome["error"] = f"no epoch had a finite {self.settings.monitor}"
        unusable = None
        if self.settings.objectives and cbs is not None:  # the values at the best epoch
            history = self.study_dir.history(outcome["number"])
            outcome["objectives"], unusable = objectives.trial_values(
                self.settings.objectives, self._properties, history, outcome["best_epoch"]
            )
        if state == COMPLETE and unusable:
            state, reason, outcome["error"] = FAIL, keys.NAN, unusable
        checkpoint = self.study_dir.checkpoint(outcome["number"])
        if checkpoint.exists():
            outcome["checkpoint"] = self.study_dir.relative(checkpoint)
        return state, reason

    def _write_session(
        self, board: Path, trial: optuna.Trial, outcome: TrialOutcome, started: float
    ) -> None:
        """The trial's HParams session; a failure to write it only costs the logs."""
        try:
            tblogs.write_session(
                board, outcome.number, trial.params, outcome.state, self.settings.monitor,
                outcome.value, outcome.best_epoch, outcome.epochs_run, started,
                objectives=outcome.objectives,
            )  # fmt: skip
        except Exception as exc:
            log.warning("trial %d: cannot write its TensorBoard session in %s: %s",
                        outcome.number, board, trial_env.error_text(exc))  # fmt: skip

    def _build(self, trial: optuna.Trial) -> keras.Model:
        return building.build_model(self.loaded, trial, self.data)

    def _label_range(self) -> tuple[float, float] | None:
        """The data's lowest and highest class label, computed once per process."""
        if self._labels is None:
            self._labels = (self.data.label_range(),)
        return self._labels[0]

    def _note_space(self, trial: optuna.Trial) -> None:
        """The space the builder asked, checked and told (:func:`tunecb.oracle.space.built`)."""
        folder, source = str(self.study_dir.root), self.settings.warm_start
        for text in space.built(trial, self._space, self.loaded.sha256, folder, source):
            log.warning(text)

    def _check_data(self, trial: optuna.Trial) -> None:
        """Say (once per process) when the data differ from the study's first trials'; the
        first trial to run records them on the study."""
        if self._data_checked:
            return
        self._data_checked = True
        study = getattr(trial, "study", None)
        if study is None:  # a FixedTrial (tunecb rerun): the caller compares
            return
        first = study.user_attrs.get(keys.DATA)
        if not first:
            study.set_user_attr(keys.DATA, self.data_print)
        elif first.get("hash") != self.data_print["hash"]:
            log.warning(
                "the data function of %s now returns other data than when study %r began "
                "(%s; then %s): the new trials' values may not compare with the earlier ones",
                self.loaded.path, self.settings.name, _parts(self.data_print), _parts(first),
            )  # fmt: skip

    def training_settings(self) -> dict[str, object]:
        """The settings that shaped a trial's training, recorded with it (for rerun)."""
        s = self.settings
        return {
            "epochs": s.epochs, "batch_size": s.batch_size, "patience": s.patience,
            "min_delta": s.min_delta, "lr_schedule": s.lr_schedule.name, "seed": s.seed,
        }  # fmt: skip

    def record(self, trial: optuna.Trial, outcome: TrialOutcome, folder) -> None:
        """Store the outcome on the Optuna trial and in ``trials/<n>/trial.json``."""
        attrs = outcome.attrs()
        attrs[keys.TRIAL_STUDY_SHA] = self.loaded.sha256
        attrs[keys.VERSIONS] = trial_env.versions()
        attrs[keys.DATA] = self.data_print
        attrs[keys.TRAINING] = self.training_settings()
        if self._in_memory:  # a continuation that took its model from memory
            attrs[keys.RESUMED_IN_MEMORY] = True
        if self.loaded.in_code:  # its file is a script or a notebook, not a study file
            attrs[keys.STUDY_IN_CODE] = True
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        write_json(
            self.study_dir.trial_json(outcome.number),
            {
                "number": outcome.number,
                "state": outcome.state,
                "value": outcome.value,
                "monitor": self.settings.monitor,
                "direction": self.settings.direction,
                "params": trial.params,
                "study": self.settings.name,
                "study_file": str(self.loaded.path.resolve()),  # rerun and retrain read it
                **attrs,
            },
        )


def _sure_epochs(epochs: int, done: int, cbs: TrialCallbacks, pruner: Any) -> int:
    """The epochs a trial's fit from epoch ``done`` trains whatever its values: until its
    pruner's first rung (the Pareto pruner's, multi-objective) and its early stopping's
    patience (:func:`tunecb.training.fast_fit.sure_epochs`)."""
    if isinstance(cbs.pruning, ParetoPruning):
        stop = min((r for r in cbs.pruning.rungs if r > done), default=None)
    else:
        stop = first_stop(pruner, done)
    left, early = None, cbs.early_stopping
    if early is not None:  # a new fit's first epoch is its best so far; a resumed one's may not be
        left = early.patience + 1 if not done else max(1, early.patience - int(early.wait))
    return fast_fit.sure_epochs(epochs, done, first_stop=stop, patience_left=left)
