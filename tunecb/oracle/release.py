"""``tunecb repair --release-running``: give up the trials that a dead run left RUNNING
where nothing can find it dead (another machine's run, over a journal file that has no
heartbeat), so that their parameters run again.

Example::

    for line in release_running_trials("results/digits", None):
        print(line)
"""

from __future__ import annotations

from pathlib import Path

from tunecb.errors import StorageError
from tunecb.oracle.attempts import release_running
from tunecb.oracle.promotions import is_side
from tunecb.storage.urls import JOURNAL_NAME, open_storage, redact
from tunecb.wording import plural


def release_running_trials(results_dir: str | None, storage_url: str | None) -> list[str]:
    """Release the RUNNING trials of every study in the storage of ``results_dir`` (its
    journal) or ``storage_url``, except those of live processes on this machine; one line
    per study saying what was done."""
    import optuna

    if storage_url is None:
        folder = Path(str(results_dir))
        if not (folder / JOURNAL_NAME).is_file():
            raise StorageError(
                f"{folder} holds no {JOURNAL_NAME}; pass the results folder of a study "
                "(e.g. results/digits), or --storage with its storage"
            )
        storage = open_storage(None, folder)
        shown = str(folder)
    else:
        storage = open_storage(storage_url, Path("."))
        shown = redact(storage_url)
    lines = []
    for summary in optuna.get_all_study_summaries(storage):
        if is_side(summary.study_name):  # the promotion pruner's tickets: not trials
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        released, alive = release_running(study)
        name = summary.study_name
        for number, owner in alive:
            lines.append(
                f"study {name!r}: trial {number} is RUNNING in process {owner}, which is "
                "alive on this machine; left as it is"
            )
        if released:
            numbers = ", ".join(str(n) for n in released)
            lines.append(
                f"study {name!r}: released {plural(len(released), 'trial')} ({numbers}) "
                "(marked FAIL as a dead worker's; the parameters run again on the next search)"
            )
        elif not alive:
            lines.append(f"study {name!r} in {shown}: no trial to release (none is RUNNING)")
        else:
            lines.append(f"study {name!r}: no trial to release")
    return lines or [f"{shown}: no study in this storage; nothing to release"]
