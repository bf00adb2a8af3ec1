"""One finished trial and what is needed to train it again: its record, the study that
declared it (checked against the fingerprint the trial recorded), the settings it trained
with, and its data (checked the same way). Used by ``retrain``, ``rerun`` and ``evaluate``.

Example::

    source = TrialSource.open("results/digits", rank=1)
    data = source.load_data()        # notes say what changed since the trial ran
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunecb.errors import ConfigError, ResultsError, StudyFileError
from tunecb.oracle import attrs as keys
from tunecb.replay.front_choice import choose
from tunecb.reporting.data.records import StudyRecords, study_records
from tunecb.results import StudyDir, read_history, read_json
from tunecb.study.data import Data, load_data
from tunecb.study.declaration import LoadedStudy, Study, study_in_code
from tunecb.study.settings import Settings, resolve
from tunecb.training.backends import load_study
from tunecb.wording import plural

log = logging.getLogger("tunecb")

# The settings a trial records (tunecb.training.runner.TrialRunner.training_settings) and
# that a rerun or a retrain takes from it rather than from today's study file.
RECORDED = ("epochs", "batch_size", "patience", "min_delta", "lr_schedule", "seed")


def pick(
    result: StudyRecords, where: str, rank: int | None, trial: int | None, **front: Any
) -> dict[str, Any]:
    """The report record of trial number ``trial``, or of row ``rank`` (1: the best), or
    of a multi-objective study's front member chosen by ``best_on=`` and ``within=``."""
    records = result.records
    if front.get("best_on") is not None or front.get("within"):
        if trial is not None or rank is not None:
            given = f"--trial {trial}" if trial is not None else f"--rank {rank}"
            raise ConfigError(f"{given} and --best-on/--within both pick a trial; give one of them")
        trial = choose(records, result.objectives, front.get("best_on"), front.get("within"),
                       where)["trial"]  # fmt: skip
    if trial is not None:
        found = [r for r in records if r["trial"] == trial]
        if not found:
            numbers = sorted(r["trial"] for r in records)
            span = f"{numbers[0]}-{numbers[-1]}" if numbers else "none"
            raise ResultsError(f"--trial {trial}: {where} has no such trial (trials: {span})")
        return found[0]
    rank = 1 if rank is None else rank
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"--rank {rank!r}: use 1 for the best trial, 2 for the next, ...")
    finished = [r for r in records if r["state"] in ("COMPLETE", "PRUNED")]
    if rank > len(finished):
        raise ResultsError(f"--rank {rank}: {where} has {plural(len(finished), 'finished trial')}")
    return finished[rank - 1]


@dataclass
class TrialSource:
    """A trial of a results folder, with its study loaded and its settings resolved."""

    study_dir: StudyDir
    record: dict[str, Any]  # the report's record of the trial
    attrs: dict[str, Any]  # the trial's user attributes (seed, training, data, versions...)
    params: dict[str, Any]
    loaded: LoadedStudy
    settings: Settings
    notes: list[str] = field(default_factory=list)  # what differs since the trial ran

    @property
    def number(self) -> int:
        return int(self.record["trial"])

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        rank: int | None = None,
        trial: int | None = None,
        study: Study | str | Path | None = None,
        **front: Any,
    ) -> TrialSource:
        """Trial ``trial`` (or the ``rank``-th best) of results folder ``path``, with the
        study that declared it: ``study`` (a :class:`Study` or a study file), else the study
        file the trial recorded. Raises :class:`StudyFileError` when there is none."""
        result = study_records(path)
        where = str(path)
        record = pick(result, where, rank, trial, **front)
        frozen = result.trials[record["trial"]]
        attrs = dict(frozen.user_attrs)
        study_dir = result.study_dir or StudyDir(Path(path))
        loaded = _study_of(study, attrs, study_dir, record["trial"])
        notes = []
        if _changed(loaded, attrs):
            what = "the study declared in" if attrs.get(keys.STUDY_IN_CODE) else "the study file"
            notes.append(f"{what} {loaded.path} changed since trial {record['trial']} ran")
        settings = _settings(loaded, result, attrs)
        return cls(study_dir, record, attrs, dict(frozen.params), loaded, settings, notes)

    def load_data(self) -> Data:
        """Call the study's data function; a note when the data differ from the trial's."""
        data = load_data(self.loaded, self.settings)
        recorded = self.attrs.get(keys.DATA) or {}
        now = data.fingerprint()
        if recorded.get("hash") and recorded["hash"] != now["hash"]:
            self.notes.append(
                f"the data changed since trial {self.number} ran "
                f"(now {_parts(now)}; then {_parts(recorded)})"
            )
        return data

    def start_backend(self, deterministic: bool = False) -> str:
        """Select the backend the trial trained on and start it quietly (with deterministic
        ops when asked); returns its name."""
        from tunecb.training import backends

        backend = backends.chosen(self.settings.backend)
        backends.select(backend)
        backends.import_quietly()
        if deterministic:
            backends.deterministic(backend)
        then = self.attrs.get(keys.VERSIONS) or {}
        now = {"backend": backend, backend: backends.version(backend)}
        import keras

        now["keras"] = keras.__version__
        changed = [
            f"{k} {then[k]} then, {now[k]} now" for k in now if then.get(k) not in (None, now[k])
        ]
        if changed:
            self.notes.append("other versions: " + "; ".join(changed))
        return backend

    @property
    def seed(self) -> int:
        seed = self.attrs.get(keys.SEED)
        if seed is None:
            raise ResultsError(f"trial {self.number} recorded no seed; it ran before tunecb 0.1")
        return int(seed)

    def learning_rates(self) -> list[float]:
        """The learning rate of each epoch the trial ran, from its history (none when any
        is missing)."""
        rates = self.history("learning_rate")
        return [r for r in rates if r is not None] if None not in rates else []

    def history(self, column: str) -> list[float | None]:
        """``column`` of each epoch of the trial's history (``None`` where empty)."""
        return history_column(self.study_dir.history(self.number), column)


def history_column(path: Path, column: str) -> list[float | None]:
    """``column`` of each row of a ``history.csv`` (``None`` where empty or missing)."""
    return [row.get(column) for row in read_history(path)]  # type: ignore[misc]


def _parts(fingerprint: dict[str, Any]) -> str:
    return "; ".join(f"{k} {v}" for k, v in (fingerprint.get("parts") or {}).items())


def _changed(loaded: LoadedStudy, attrs: dict[str, Any]) -> bool:
    """Whether the study differs from the one the trial ran, by the fingerprint it
    recorded: a study file's bytes, or a study declared in code's functions and settings
    (:func:`~tunecb.study.declaration.study_in_code`; the script that declares it may
    change elsewhere, its search call included)."""
    recorded = attrs.get(keys.TRIAL_STUDY_SHA)
    if recorded is None:
        return False
    if attrs.get(keys.STUDY_IN_CODE):
        return study_in_code(loaded.study).sha256 != recorded
    return not loaded.in_code and loaded.sha256 != recorded  # study= in code: no file to compare


def _study_of(
    study: Study | str | Path | None, attrs: dict[str, Any], study_dir: StudyDir, number: int
) -> LoadedStudy:
    """The study passed (``--study FILE``, ``study=``), else the file the trial recorded:
    a study file, or the script that declared the study in code and searched it. A script
    is imported with its ``tunecb.search`` call stopped (its study taken, nothing searched,
    :func:`~tunecb.study.study_file.load_study_file`). A notebook cannot be imported: its
    study must be passed."""
    if isinstance(study, Study):
        return study_in_code(study)
    # The backend the trial trained on, before the file runs (its top level may use Keras).
    backend = (attrs.get(keys.VERSIONS) or {}).get("backend")
    if study is not None:
        return load_study(study, backend)
    recorded = attrs.get(keys.STUDY_FILE) or (read_json(study_dir.trial_json(number)) or {}).get(
        keys.STUDY_FILE
    )
    kind = "script" if attrs.get(keys.STUDY_IN_CODE) else "study file"
    if not recorded or "ipykernel" in recorded or not recorded.endswith(".py"):
        raise StudyFileError(
            f"trial {number} of {study_dir.root} was declared in a notebook or an interactive "
            "session, which cannot be imported; pass its study: --study FILE (a study file or a "
            "script that declares it), or study= in Python"
        )
    path = Path(recorded)
    if not path.is_absolute() and not path.is_file():  # recorded relative to the search's cwd
        beside = study_dir.root.resolve().parent.parent / path  # results/<study> → ./
        path = beside if beside.is_file() else path
    if not path.is_file():
        raise StudyFileError(
            f"the {kind} {recorded!r} that trial {number} ran from is gone; it is needed to "
            "build and train the model again: pass it with --study FILE"
        )
    log.info("trial %d: study from the %s it ran from, %s", number, kind, path)
    return load_study(path, backend)


def _settings(loaded: LoadedStudy, result: StudyRecords, attrs: dict[str, Any]) -> Settings:
    """The study's settings with what the trial recorded winning (a search may have run
    with flags that today's command line does not repeat)."""
    training = attrs.get(keys.TRAINING) or {}
    overrides: dict[str, Any] = {k: training.get(k) for k in RECORDED}
    overrides.update(name=result.name, monitor=result.monitor, direction=result.direction)
    schedule = overrides.pop("lr_schedule")  # by name: the study's own when the names match
    if overrides.get("epochs") is None:
        overrides["epochs"] = result.epochs
    overrides["backend"] = (attrs.get(keys.VERSIONS) or {}).get("backend")
    settings = resolve(
        loaded.study.settings, overrides, default_name=loaded.default_name,
        study_path=None if loaded.in_code else loaded.path,
    )  # fmt: skip
    import dataclasses

    # patience=None in the record means "no early stopping", not "not given"
    if "patience" in training and training["patience"] is None and settings.patience is not None:
        settings = dataclasses.replace(settings, patience=None)
    if schedule and schedule != settings.lr_schedule.name:
        from tunecb.study.schedules import parse_schedule

        settings = dataclasses.replace(settings, lr_schedule=parse_schedule(schedule))
    return settings
