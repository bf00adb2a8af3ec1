"""Opening a study that two machines start at the same moment (a real journal storage;
the race forced: the other machine creates the study between our look and our create)."""

from __future__ import annotations

import optuna
from conftest import write_study

from tunecb.oracle.opening import open_study
from tunecb.results import StudyDir
from tunecb.study.settings import resolve
from tunecb.study.study_file import load_study_file


def test_the_second_of_two_simultaneous_creates_continues_the_first_ones_study(
    tmp_path, monkeypatch
):
    loaded = load_study_file(write_study(tmp_path))
    settings = resolve(loaded.study.settings, {}, default_name=loaded.default_name,
                       study_path=loaded.path)  # fmt: skip
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "optuna.journal"))
    )
    real_listing = optuna.get_all_study_summaries

    def listing_then_the_other_machine_creates(storage_arg, *args, **kwargs):
        seen = real_listing(storage_arg, *args, **kwargs)
        if not seen:  # our look found nothing; now the other machine's create lands
            other = optuna.create_study(storage=storage_arg, study_name=settings.name,
                                        direction=settings.direction)  # fmt: skip
            other.set_user_attr("monitor", settings.monitor)
        return seen

    monkeypatch.setattr(optuna, "get_all_study_summaries", listing_then_the_other_machine_creates)
    study, created, notes = open_study(loaded, settings, StudyDir(tmp_path / "b" / "tiny"), storage)
    assert not created and notes == []
    assert study.study_name == settings.name
    assert len(optuna.get_all_study_summaries(storage)) == 1
