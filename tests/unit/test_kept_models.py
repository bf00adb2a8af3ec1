"""The models a worker keeps of the trials it paused (tunecb.training.kept_models): which it
keeps and lets go (fakes), the copy of a real model's variables put back, and when the
backup on disk says a kept model is still the one to resume. Milliseconds each."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest

from tunecb.errors import ConfigError
from tunecb.results import BackupDir
from tunecb.training import backup as backups
from tunecb.training.kept_models import ENV, Kept, KeptModels, kept_bytes
from tunecb.training.variables import put_back, snapshot


def kept(config: int, paused: int | None = None, nbytes: int = 10) -> Kept:
    return Kept(model=object(), values=[], config=config,
                paused=config if paused is None else paused, epoch=1, nbytes=nbytes)  # fmt: skip


def test_the_least_recently_paused_goes_first_when_the_count_is_full():
    models = KeptModels(max_models=2)
    for config in (1, 2, 3):
        assert models.put(kept(config))
    assert models.held() == {2, 3} and models.evicted == 1
    models.put(kept(2, paused=7))  # paused again (continuation 7): the most recent now
    models.put(kept(4))
    assert models.held() == {7, 4}


def test_the_bytes_bound_evicts_and_a_model_larger_than_it_is_not_kept():
    models = KeptModels(max_models=10, max_bytes=100)
    models.put(kept(1, nbytes=60))
    models.put(kept(2, nbytes=30))
    models.put(kept(3, nbytes=30))  # 120 > 100: the oldest goes
    assert models.held() == {2, 3} and models.nbytes() == 60
    assert not models.put(kept(4, nbytes=101))
    assert models.held() == {2, 3}


def test_a_configuration_paused_again_elsewhere_is_not_taken_from_memory():
    models = KeptModels()
    models.put(kept(5, paused=5))
    # Another worker resumed trial 5 and paused it as trial 9; this worker now claims 9.
    assert models.take(config=5, paused=9) is None
    assert not models.holds(5) and len(models) == 0  # the stale model is let go
    models.put(kept(6))
    taken = models.take(config=6, paused=6)
    assert taken is not None and taken.paused == 6 and len(models) == 0


def test_none_are_kept_when_turned_off_and_all_go_when_the_search_ends(monkeypatch):
    monkeypatch.setenv(ENV, "0")
    off = KeptModels.from_env()
    assert not off.put(kept(1)) and len(off) == 0
    monkeypatch.setenv(ENV, "-1")
    with pytest.raises(ConfigError, match="TUNECB_KEEP_PAUSED='-1'"):
        KeptModels.from_env()
    monkeypatch.delenv(ENV)
    models = KeptModels.from_env()
    models.put(kept(1))
    models.put(kept(2))
    models.clear()
    assert len(models) == 0 and not models.holds(1)


def test_a_snapshot_of_a_model_and_its_optimizer_is_put_back_exactly():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    values = snapshot(model)
    assert kept_bytes(values) == 2 * sum(v.nbytes for v in values)
    before = [np.array(v) for v in values]
    for variable in model.weights + list(model.optimizer.variables):
        variable.assign(np.ones(variable.shape, variable.dtype))  # the fit went on
    put_back(model, values)
    after = snapshot(model)
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    with pytest.raises(ValueError, match="values for"):
        put_back(model, values[:-1])


def test_a_kept_model_resumes_only_while_the_backup_is_the_one_its_pause_wrote(tmp_path):
    files = BackupDir(tmp_path / "backups" / "3")
    assert not backups.written_at_pause(files, "abc", 3, 1)  # no backup at all
    files.folder.mkdir(parents=True)
    files.state.write_text(json.dumps({"stamp": "abc", "attempt": 3, "epoch": 1}))
    assert backups.written_at_pause(files, "abc", 3, 1)
    assert not backups.written_at_pause(files, "abd", 3, 1)  # other parameters
    # Another worker resumed trial 3 and paused it again as trial 8, at epoch 3.
    files.state.write_text(json.dumps({"stamp": "abc", "attempt": 8, "epoch": 3}))
    assert not backups.written_at_pause(files, "abc", 3, 1)


def test_a_worker_near_its_memory_limit_keeps_no_model():
    from tunecb.oracle.deaths import rss_of
    from tunecb.training.runner import TrialRunner

    runner = TrialRunner.__new__(TrialRunner)  # only what the rule reads
    runner.kept, runner.memory_limit_mb = KeptModels(), None
    runner.kept.put(kept(1))
    assert runner._room()
    rss = rss_of(os.getpid())
    runner.memory_limit_mb = 10 * rss
    assert runner._room() and len(runner.kept) == 1
    runner.memory_limit_mb = rss  # --worker-memory: above 3/4 of it, the kept ones go too
    assert not runner._room() and len(runner.kept) == 0


def test_early_stopping_takes_the_kept_best_weights_without_reading_the_checkpoint(tmp_path):
    from tunecb.training.keras_state import TrialEarlyStopping

    unreadable = tmp_path / "best.keras"
    unreadable.write_text("not a model")  # a resume from the backup would read it
    stop = TrialEarlyStopping(unreadable, monitor="val_loss", restore_best_weights=True)
    stop.kept_best_weights = [np.ones(2)]
    stop.set_state({"wait": 1, "best": 0.5, "best_epoch": 2})
    assert stop.best_weights == stop.kept_best_weights and stop.wait == 1
