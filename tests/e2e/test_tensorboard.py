"""--tensorboard: real searches, then their event files read back, by hand and by TensorBoard's
own HParams plugin backend (what the HParams tab shows)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras  # noqa: F401  (TensorFlow imported before any test hides the tensorboard package)
import pytest
from conftest import DEFAULT_SETTINGS, write_study

# Trial 1 is pruned after its 2nd epoch (by a pruner of the study file), trial 2's builder
# raises after its parameters are drawn: one trial of each state.
STATES_SETTINGS = DEFAULT_SETTINGS.replace("n_trials=3", "n_trials=4").replace(
    'pruner="none"', "pruner=PruneTrialOne()"
)
PRUNER = """
import optuna


class PruneTrialOne(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return trial.number == 1 and (trial.last_step or 0) >= 2
"""


def events(folder: Path) -> list:
    """The events of the event files directly in ``folder`` (one TensorBoard run)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    files = sorted(folder.glob("events.out.tfevents.*"))
    return [event for f in files for event in EventFileLoader(str(f)).Load()]


def sessions(folder: Path) -> tuple[list, list]:
    """The HParams session start and end infos in a run folder."""
    from tensorboard.plugins.hparams import metadata

    starts, ends = [], []
    for event in events(folder):
        for value in event.summary.value:
            content = value.metadata.plugin_data.content
            if value.tag == metadata.SESSION_START_INFO_TAG:
                starts.append(metadata.parse_session_start_info_plugin_data(content))
            elif value.tag == metadata.SESSION_END_INFO_TAG:
                ends.append(metadata.parse_session_end_info_plugin_data(content))
    return starts, ends


def scalars(folder: Path) -> dict[str, dict[int, float]]:
    """``{tag: {step: value}}`` of the scalars in a run folder (a repeated step fails)."""
    from tensorboard.util import tensor_util

    out: dict[str, dict[int, float]] = {}
    for event in events(folder):
        for value in event.summary.value:
            if value.tag.startswith("_hparams_") or not value.HasField("tensor"):
                continue
            steps = out.setdefault(value.tag, {})
            assert event.step not in steps, f"{folder}: {value.tag} twice at step {event.step}"
            steps[event.step] = float(tensor_util.make_ndarray(value.tensor))
    return out


def hparams(start) -> dict:
    return {k: json.loads(json.dumps(_plain(v))) for k, v in start.hparams.items()}


def _plain(value):
    kind = value.WhichOneof("kind")
    return getattr(value, kind)


def report(cli, folder: Path) -> dict[int, dict]:
    code, out, err = cli("report", folder, "--format", "json")
    assert code == 0, err
    return {row["trial"]: row for row in json.loads(out)}


def hparams_tab(logdir: Path):
    """The experiment and the session groups as TensorBoard's HParams plugin serves them to
    its tab (the same handlers as its /experiment and /session_groups routes)."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import (
        api_pb2,
        backend_context,
        get_experiment,
        list_session_groups,
    )

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    plugin = backend_context.Context(
        base_plugin.TBContext(logdir=str(logdir), data_provider=provider, multiplexer=mux)
    )
    request = context.RequestContext()
    experiment = get_experiment.Handler(request, plugin, "", api_pb2.GetExperimentRequest()).run()
    query = api_pb2.ListSessionGroupsRequest(
        start_index=0,
        slice_size=100,
        allowed_statuses=[api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS,
                          api_pb2.STATUS_FAILURE, api_pb2.STATUS_RUNNING],
    )  # fmt: skip
    for info in experiment.metric_infos:
        query.col_params.add(metric=info.name)
    for info in experiment.hparam_infos:
        query.col_params.add(hparam=info.name)
    groups = list_session_groups.Handler(request, plugin, "", query).run()
    return experiment, groups


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A 4-trial search with --tensorboard: trials COMPLETE, PRUNED, FAIL, COMPLETE."""
    from tunecb.cli import main

    folder = tmp_path_factory.mktemp("tb")
    path = write_study(
        folder, name="tbs", settings=STATES_SETTINGS,
        build_extra='if trial.number == 2:\n    raise ValueError("deliberate failure")',
    )  # fmt: skip
    text = path.read_text().replace("study = tunecb.Study(", PRUNER + "\n\nstudy = tunecb.Study(")
    path.write_text(text)
    assert main(["search", str(path), "--results", str(folder / "results"), "--tensorboard"]) == 0
    return folder / "results" / "tbs"


def test_each_trial_has_one_hparams_session_with_its_params_objective_and_state(searched, cli):
    rows = report(cli, searched)
    assert [rows[n]["state"] for n in range(4)] == ["COMPLETE", "PRUNED", "FAIL", "COMPLETE"]
    logdir = searched / "tensorboard"
    assert sorted(p.name for p in logdir.iterdir()) == [f"trial_{n}" for n in range(4)]
    from tensorboard.plugins.hparams import api_pb2

    for n, row in rows.items():
        run = logdir / f"trial_{n}"
        starts, ends = sessions(run)
        assert len(starts) == 1 and len(ends) == 1, n
        params = {k.removeprefix("params_"): v for k, v in row.items() if k.startswith("params_")}
        params = {k: v for k, v in params.items() if v is not None}
        assert hparams(starts[0]) == {**params, "state": row["state"]}
        assert starts[0].group_name == f"trial_{n}"
        failed = row["state"] == "FAIL"
        assert ends[0].status == (api_pb2.STATUS_FAILURE if failed else api_pb2.STATUS_SUCCESS)
        assert ends[0].end_time_secs >= starts[0].start_time_secs
        own = scalars(run)
        if failed:  # the builder raised: no epoch, no objective, no Keras run
            assert "best_val_accuracy" not in own and own["epochs"] == {0: 0.0}
            assert not (run / "train").exists()
            continue
        assert own["best_val_accuracy"] == {row["best_epoch"] - 1: pytest.approx(row["value"])}
        assert list(own["epochs"].values()) == [row["epochs"]]
        # Keras' epoch scalars: step = epoch from 0, one per epoch run, no batch scalars
        train, val = scalars(run / "train"), scalars(run / "validation")
        assert sorted(train) == ["epoch_accuracy", "epoch_learning_rate", "epoch_loss"]
        assert sorted(val) == ["epoch_accuracy", "epoch_loss"]
        assert sorted(val["epoch_accuracy"]) == list(range(row["epochs"]))
        assert max(val["epoch_accuracy"].values()) == pytest.approx(row["value"])
    assert rows[1]["epochs"] == 2  # pruned after its 2nd epoch: its curve stops there


def test_the_hparams_tab_lists_every_trial_with_the_objective_as_a_column(searched, cli):
    rows = report(cli, searched)
    experiment, groups = hparams_tab(searched / "tensorboard")
    columns = {(m.name.group, m.name.tag) for m in experiment.metric_infos}
    assert ("", "best_val_accuracy") in columns
    assert {("validation", "epoch_accuracy"), ("train", "epoch_loss")} <= columns
    names = {h.name: h for h in experiment.hparam_infos}
    assert set(names) == {"lr", "units", "state"}
    assert set(names["state"].domain_discrete) == {"COMPLETE", "PRUNED", "FAIL"}
    assert sorted(g.name for g in groups.session_groups) == [f"trial_{n}" for n in range(4)]
    for group in groups.session_groups:
        row = rows[int(group.name.removeprefix("trial_"))]
        assert group.hparams["state"].string_value == row["state"]
        objective = [m.value for m in group.metric_values if m.name.tag == "best_val_accuracy"]
        assert objective == ([] if row["value"] is None else [pytest.approx(row["value"])])


def test_without_the_setting_nothing_is_written_and_tensorboard_is_not_imported(tmp_path):
    path = write_study(tmp_path, settings=DEFAULT_SETTINGS.replace("n_trials=3", "n_trials=1"))
    results = tmp_path / "results"
    code = (
        "import sys\nfrom tunecb.cli import main\n"
        f"code = main(['search', {str(path)!r}, '--results', {str(results)!r}, '--epochs', '1'])\n"
        "print('TB', [m for m in sys.modules if m.split('.')[0] == 'tensorboard'], code)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "TB [] 0"
    assert (results / "tiny" / "trials" / "0" / "best.keras").exists()
    assert not (results / "tiny" / "tensorboard").exists()


@pytest.mark.parametrize("how", ["flag", "study file"])
def test_a_missing_tensorboard_package_is_a_one_line_error_before_any_trial(
    tmp_path, cli, monkeypatch, how
):
    settings = DEFAULT_SETTINGS + (", tensorboard=True" if how == "study file" else "")
    path = write_study(tmp_path, settings=settings)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    flag = ["--tensorboard"] if how == "flag" else []
    code, out, err = cli("search", path, "--results", tmp_path / "results", *flag)
    assert code == 2
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert "--tensorboard / tensorboard=True" in err
    assert 'pip install "tunecb[tensorboard]"' in err
    assert not (tmp_path / "results").exists()  # nothing written, nothing trained


KILLER = """
import os
import signal
from pathlib import Path


class DieOnce(keras.callbacks.Callback):
    # The first trial's worker dies at the end of its 3rd epoch, once.
    def on_epoch_end(self, epoch, logs=None):
        marker = Path(__file__).with_name("died")
        if epoch == 2 and not marker.exists():
            marker.write_text("x")
            os.kill(os.getpid(), signal.SIGKILL)


@study.callbacks
def callbacks(trial):
    return [DieOnce()]
"""


@pytest.mark.slow
def test_a_trial_resumed_after_its_worker_died_has_one_session_with_the_whole_curve(tmp_path, cli):
    settings = DEFAULT_SETTINGS.replace("epochs=3", "epochs=6").replace("n_trials=3", "n_trials=2")
    path = write_study(tmp_path, settings=settings, extra=KILLER)
    results = tmp_path / "results"
    code, _, err = cli(  # launched in this process
        "search", path, "--results", results, "--jobs", "1", "--backup-every", "0", "--tensorboard"
    )
    assert code == 0, err
    rows = report(cli, results / "tiny")
    assert rows[0]["state"] == "FAIL" and rows[0]["stop_reason"] == "worker_died"
    rerun = next(r for n, r in rows.items() if n > 0 and r["params_lr"] == rows[0]["params_lr"])
    number = rerun["trial"]
    meta = json.loads((results / "tiny" / "trials" / str(number) / "trial.json").read_text())
    assert meta["resumed_from_epoch"] == 2 and rerun["epochs"] == 6
    logdir = results / "tiny" / "tensorboard"
    # The dead attempt never finished: no session (its partial curve stays a plain run).
    assert sessions(logdir / "trial_0") == ([], [])
    finished = sorted(n for n in rows if n != 0)
    runs = sorted(p.name for p in logdir.iterdir())
    assert runs == sorted(["trial_0"] + [f"trial_{n}" for n in finished])
    for n in finished:
        assert len(sessions(logdir / f"trial_{n}")[0]) == 1
    # The rerun's curve: the dead attempt's 2 backed-up epochs carried over, then its own.
    run = logdir / f"trial_{number}"
    val = scalars(run / "validation")["epoch_accuracy"]
    assert sorted(val) == list(range(6))
    history = (results / "tiny" / "trials" / str(number) / "history.csv").read_text().splitlines()
    header = history[0].split(",")
    column = header.index("val_accuracy")
    for line in history[1:]:
        cells = line.split(",")
        assert val[int(cells[0]) - 1] == pytest.approx(float(cells[column]))
    own = scalars(run)
    assert own["best_val_accuracy"] == {rerun["best_epoch"] - 1: pytest.approx(rerun["value"])}
    _, groups = hparams_tab(logdir)
    assert sorted(g.name for g in groups.session_groups) == [f"trial_{n}" for n in finished]
