"""``tunecb report`` says why a trial stopped at a limit (issue 21): a configuration failed
for good after killing its process, a trial stopped by its time limit; the HTML report's
timeline hatches them. A study made with Optuna's API (tests/synthetic.py), no training."""

from __future__ import annotations

import datetime as dt

import optuna
from optuna.trial import TrialState, create_trial

from tests.synthetic import make_big_study

KILLED_WHY = "killed 3 times (SIGKILL), last at 812 MiB RSS: out of memory, or killed from outside?"
LIMIT_WHY = "stopped: the trial limit of 3 s passed after epoch 2"


def _study_with_limits(folder):
    make_big_study(folder, 4, workers=2)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(folder / "optuna.journal"))
    )
    study = optuna.load_study(study_name="big", storage=storage)
    done = study.get_trials(deepcopy=False)[0]
    start = max(t.datetime_complete for t in study.trials)
    base = {"worker": "host0:1000", "duration_s": 3.2, "seed": 1, "lr_schedule": "none"}
    added = [
        (TrialState.FAIL, None, {**base, "stop_reason": "killed", "error": KILLED_WHY,
                                 "epochs_run": 0}),
        (TrialState.COMPLETE, 0.9, {**base, "stop_reason": "time_limit", "error": LIMIT_WHY,
                                    "epochs_run": 2, "best_epoch": 2, "best_value": 0.9}),
    ]  # fmt: skip
    for i, (state, value, attrs) in enumerate(added):
        trial = create_trial(state=state, value=value, params=done.params,
                             distributions=done.distributions, user_attrs=attrs,
                             intermediate_values={1: 0.8, 2: 0.9} if value else {})  # fmt: skip
        trial.datetime_start = start + dt.timedelta(seconds=10 * i)
        trial.datetime_complete = trial.datetime_start + dt.timedelta(seconds=3.2)
        study.add_trial(trial)
    return len(study.trials) - 2


def test_the_report_says_why_a_trial_stopped_at_a_limit(tmp_path, cli):
    folder = tmp_path / "big"
    killed = _study_with_limits(folder)
    code, out, err = cli("report", folder, "--format", "csv")
    assert code == 0, err
    assert "killed" in out and KILLED_WHY in out
    assert "time_limit" in out and LIMIT_WHY in out
    code, out, err = cli("report", folder, "--trial", killed)
    assert code == 0, err
    text = " ".join(out.split())  # the view wraps long lines
    assert "stopped: killed" in text and KILLED_WHY in text


def test_the_timeline_hatches_trials_stopped_by_a_limit(tmp_path):
    from tunecb.reporting.data.records import study_records
    from tunecb.reporting.plots.study import timeline_plot

    folder = tmp_path / "big"
    _study_with_limits(folder)
    fig, _ = timeline_plot(study_records(folder))
    ax = fig.axes[0]
    hatched = [c for c in ax.collections if c.get_hatch()]
    assert len(hatched) == 1 and len(hatched[0].get_paths()) == 2  # both, in worker 0's row
    assert "time limit / killed" in [t.get_text() for t in ax.get_legend().get_texts()]
