"""TensorBoard logs of a search (``--tensorboard``): one HParams session per trial.

Layout (``tensorboard --logdir results/<study>/tensorboard``)::

    tensorboard/trial_<n>/              the HParams session: the trial's parameters and
                                        state, its objective, best epoch and epochs run
    tensorboard/trial_<n>/train/        Keras' epoch scalars (epoch_loss, ...)
    tensorboard/trial_<n>/validation/   (epoch_loss, epoch_accuracy, ...)

There is no experiment summary (``hparams_config``): the HParams plugin builds the
experiment from the sessions themselves (the union of their parameters, and every scalar
below a session as a metric column). Optuna's parameters are defined by running, a
conditional one appears only in later trials, and several workers (or machines) write at
once: a single config would have to be rewritten as parameters appear, and TensorBoard
keeps the first version of a summary it has read and hides anything the config does not
list. Each trial writes only its own folder, so workers never share a file.

The session is written when the trial ends, in one go, so a trial whose worker died has
none (its scalars stay in the Scalars tab); its rerun's session holds the whole curve.

The ``tensorboard`` package is imported only when the setting is on.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

from tunecb.errors import ConfigError
from tunecb.training.backends import found

log = logging.getLogger("tunecb")

STATE_HPARAM = "state"  # the trial's Optuna state as a (string) hyperparameter column


def require(backend: str = "tensorflow") -> None:
    """Raise :class:`ConfigError` when what the logs need is not installed: the
    ``tensorboard`` package, and TensorFlow itself (Keras' ``TensorBoard`` callback writes
    its epoch scalars with ``tf.summary`` on every backend).

    Cheap: it finds the packages without importing them.

    >>> require()  # doctest: +SKIP
    """
    if not found("tensorflow"):  # a lazy import of the study file stays lazy
        raise ConfigError(
            f"--tensorboard / tensorboard=True on the {backend!r} backend needs TensorFlow "
            "installed as well (Keras' TensorBoard callback writes with tf.summary on every "
            'backend): pip install "tunecb[cpu,tensorboard]", or leave --tensorboard off'
        )
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "--tensorboard / tensorboard=True needs the tensorboard package, which is not "
            "installed (TensorFlow 2.21 no longer installs it); "
            'run pip install "tunecb[tensorboard]" (or pip install tensorboard)'
        )


def reset_run(run_dir: Path) -> None:
    """Remove an earlier attempt's logs of the same trial number (one session per trial)."""
    shutil.rmtree(run_dir, ignore_errors=True)


def write_session(
    run_dir: Path,
    number: int,
    params: dict[str, Any],
    state: str,
    monitor: str,
    value: float | None,
    best_epoch: int | None,
    epochs_run: int,
    started: float,
    objectives: dict[str, float | None] | None = None,
) -> None:
    """Write trial ``number``'s HParams session into ``run_dir``: its parameters and
    ``state`` (``COMPLETE``, ``PRUNED``, ``FAIL``) as hyperparameters, and the scalars
    ``best_<monitor>`` (the objective; none when no epoch had a finite value),
    ``best_epoch`` and ``epochs``. ``started`` is the trial's start (``time.time()``).
    A multi-objective trial's ``objectives`` (``{name: value}`` at its result's epoch)
    add a ``best_<name>`` column each, so the HParams tab compares trials on all of them.

    Example::

        write_session(StudyDir(root).tensorboard_run(3), 3, {"lr": 0.01}, "COMPLETE",
                      "val_accuracy", 0.97, 12, 15, started=time.time() - 30)
    """
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
    from tensorboard.plugins.hparams import summary_v2 as hp
    from tensorboard.plugins.scalar.summary_v2 import scalar_pb
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    hparams = {name: _hparam_value(v) for name, v in params.items()}
    if STATE_HPARAM not in hparams:
        hparams[STATE_HPARAM] = state
    ended = time.time()
    status = api_pb2.STATUS_FAILURE if state == "FAIL" else api_pb2.STATUS_SUCCESS
    end_info = plugin_data_pb2.HParamsPluginData(
        session_end_info=plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=ended)
    )
    end = summary_pb2.Summary()
    end.value.add(
        tag=metadata.SESSION_END_INFO_TAG,
        metadata=metadata.create_summary_metadata(end_info),
        tensor=metadata.NULL_TENSOR,
    )
    step = max(0, (best_epoch or epochs_run) - 1)  # Keras' epoch scalars count from 0
    summaries = [hp.hparams_pb(hparams, trial_id=f"trial_{number}", start_time_secs=started)]
    if value is not None and math.isfinite(value):
        summaries.append(scalar_pb(f"best_{monitor}", value))
    for name, objective in (objectives or {}).items():
        if name != monitor and objective is not None and math.isfinite(objective):
            summaries.append(scalar_pb(f"best_{name}", objective))
    if best_epoch is not None:
        summaries.append(scalar_pb("best_epoch", best_epoch))
    summaries += [scalar_pb("epochs", epochs_run), end]

    run_dir.mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(run_dir), filename_suffix=".hparams")
    try:
        for summary in summaries:
            writer.add_event(event_pb2.Event(wall_time=ended, step=step, summary=summary))
    finally:
        writer.close()


def _hparam_value(value: Any) -> bool | int | float | str:
    """A value the HParams plugin accepts (Optuna's categorical choices may be ``None``)."""
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)
