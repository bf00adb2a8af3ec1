"""Multi-objective studies without a fit: the objectives= setting, Pareto ranks, hypervolume
and the rung decision, the pruning callback on a fake study, the front of a real in-memory
Optuna study."""

from __future__ import annotations

import csv
import random
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from tunecb.errors import ConfigError
from tunecb.oracle import attrs as keys
from tunecb.oracle import front, pareto
from tunecb.study.objectives import parse_objectives
from tunecb.study.settings import resolve

UP_DOWN = [True, False]


def _resolve(study: dict, flags: dict | None = None):
    return resolve(study, flags or {}, default_name="s", study_path="st.py")


# --- the setting -------------------------------------------------------------------------


def test_objectives_set_the_monitor_direction_and_the_pareto_pruner():
    s = _resolve({"objectives": {"params": "min", "val_loss": "min"}})
    assert [o.name for o in s.objectives] == ["params", "val_loss"]
    assert (s.monitor, s.direction, s.pruner) == ("val_loss", "minimize", "pareto")


def test_the_cli_flag_takes_name_colon_direction_pairs():
    s = _resolve({}, {"objectives": "val_accuracy:max, size_mb:min", "pruner": "none"})
    assert [(o.name, o.direction) for o in s.objectives] == [
        ("val_accuracy", "maximize"),
        ("size_mb", "minimize"),
    ]
    assert s.pruner == "none" and s.sources["objectives"] == "--objectives"


def test_a_single_objective_study_is_unchanged():
    s = _resolve({"monitor": "val_accuracy"})
    assert s.objectives is None and s.pruner == "median" and s.direction == "maximize"


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"objectives": {"val_accuracy": "up", "params": "min"}}, "neither 'max' nor 'min'"),
        ({"objectives": {"val_accuracy": "max"}}, "two or more objectives"),
        ({"objectives": {"params": "min", "size_mb": "min"}}, "at least one metric"),
        ({"objectives": {"val_loss": "max", "params": "min"}}, "a loss goes down"),
        ({"objectives": {"val_accuracy": "max", "flops": ("min", 3)}}, "is not a function"),
        ({"objectives": "val_accuracy"}, "name:max or name:min"),
        ({"objectives": {"val_accuracy": "max", "params": "min"}, "pruner": "median"},
         "cannot judge a multi-objective trial"),
        ({"objectives": {"val_accuracy": "max", "params": "min"}, "monitor": "val_loss"},
         "contradicts"),
        ({"monitor": "val_accuracy", "pruner": "pareto"}, "set objectives="),
    ],
)  # fmt: skip
def test_bad_objectives_are_one_line_errors_naming_the_field(settings, fragment):
    with pytest.raises(ConfigError) as exc:
        _resolve(settings)
    message = str(exc.value)
    assert fragment in message and "\n" not in message
    assert message.startswith("st.py: ")


# --- dominance, ranks, the rung decision ------------------------------------------------


def test_ranks_peel_fronts_and_equal_vectors_share_one():
    vectors = [(0.9, 10), (0.9, 10), (0.8, 20), (0.7, 30), (0.95, 50)]
    assert pareto.ranks(vectors, UP_DOWN) == [0, 0, 1, 2, 0]


def test_survives_keeps_the_top_third_of_a_chain():
    chain = [(1.0 - i / 10, float(i)) for i in range(9)]  # each dominates the next
    kept = [pareto.survives(v, [w for w in chain if w is not v], UP_DOWN) for v in chain]
    assert kept == [True] * 3 + [False] * 6


def test_survives_cuts_a_front_that_straddles_the_cut_by_what_each_adds():
    """Exactly the top third, as MOASHA counts: a wide front is cut by the hypervolume each
    member adds (up to the rung's reference point), not by crowding (its ends first)."""
    front_five = [(0.11, 0.0), (0.52, 1.0), (0.8, 2.0), (0.85, 3.0), (0.9, 4.0)]  # one front
    at_rung = [*front_five, (0.1, 99.0), (0.2, 98.0)]  # 7 at the rung: 2 go on
    kept = [v for v in at_rung if pareto.survives(v, [w for w in at_rung if w is not v], UP_DOWN)]
    # each adds (reference 0.02 accuracy, 108.9 parameters): 0.09, 0.41, 0.28, 0.05, 5.245;
    # crowding would keep both ends, the smallest one at chance accuracy too
    assert kept == [front_five[1], front_five[4]]
    assert pareto.survives((0.1, 99.0), [(0.9, 1.0)], UP_DOWN)  # fewer than 3: start-up


def test_the_smallest_model_so_far_at_chance_accuracy_stops():
    """The live runs' finding: under crowding distance (MOASHA) the smallest model so far is
    an end of the front, infinitely isolated, and went on whatever its accuracy; 34 of the
    67 trials that trained all 20 epochs in six 36-trial searches did so as the smallest."""
    earlier = [(0.95, 20_000.0), (0.9, 5_000.0), (0.85, 3_000.0), (0.5, 2_000.0), (0.6, 4_000.0)]
    assert not pareto.survives((0.11, 1_500.0), earlier, UP_DOWN)  # smallest, at chance
    assert pareto.survives((0.88, 1_500.0), earlier, UP_DOWN)  # smallest, and good


@pytest.mark.parametrize("seed", range(6))
def test_place_and_the_order_agree_with_contributions_left_out_one_by_one(seed):
    """The pruner's ``place`` (own front only, two objectives by boxes) and the full order
    agree with a brute force: fronts peeled, each member's hypervolume left out, in 2 and 3
    objectives, with ties and twins (a tie goes to the one placed)."""
    rng = random.Random(seed)
    dims = 2 + seed % 2
    maximize = [True, False, False][:dims]
    vectors = [tuple(float(rng.choice(range(6))) for _ in range(dims)) for _ in range(12)]
    ref = pareto.reference(vectors, maximize)
    rank = _brute_ranks(vectors, maximize)
    added = {}
    for r in set(rank):
        members = [i for i in range(len(vectors)) if rank[i] == r]
        points = [vectors[i] for i in members]
        total = pareto.hypervolume(points, maximize, ref)
        for k, i in enumerate(members):
            added[i] = total - pareto.hypervolume(points[:k] + points[k + 1 :], maximize, ref)
    expected = [
        sum(rank[j] < rank[i] or (rank[j] == rank[i] and added[j] > added[i] + 1e-9)
            for j in range(len(vectors)))
        for i in range(len(vectors))
    ]  # fmt: skip
    assert [pareto.place(i, vectors, maximize) for i in range(len(vectors))] == expected
    order = pareto.promotion_order(vectors, maximize)
    assert [expected[i] for i in order] == sorted(expected)


def _brute_ranks(vectors, maximize):
    left, rank, result = set(range(len(vectors))), 0, [0] * len(vectors)
    while left:
        now = {
            i
            for i in left
            if not any(pareto.dominates(vectors[j], vectors[i], maximize) for j in left)
        }
        for i in now:
            result[i] = rank
        left -= now
        rank += 1
    return result


def test_hypervolume_in_any_dimension():
    two = [(0.9, 10.0), (0.8, 5.0)]
    assert pareto.hypervolume(two, UP_DOWN, (0.0, 20.0)) == pareto.hypervolume_2d(
        two, UP_DOWN, (0.0, 20.0)
    )
    boxes = [(1.0, 1.0, 2.0), (2.0, 2.0, 1.0)]  # minimised; two boxes overlapping in 1x1x1
    assert pareto.hypervolume(boxes, [False] * 3, (3.0, 3.0, 3.0)) == pytest.approx(4 + 2 - 1)


def test_hypervolume_of_two_objectives_grows_with_a_better_point():
    base = pareto.hypervolume_2d([(0.8, 10)], UP_DOWN, (0.0, 100))
    more = pareto.hypervolume_2d([(0.8, 10), (0.9, 50)], UP_DOWN, (0.0, 100))
    assert base == pytest.approx(0.8 * 90) and more == pytest.approx(0.8 * 90 + 0.1 * 50)


# --- the pruning callback, on a fake study ------------------------------------------------


class _FakeTrial:
    def __init__(self, number: int, others: list) -> None:
        self.number, self.user_attrs = number, {}
        self.study = SimpleNamespace(get_trials=lambda deepcopy=False: others)

    def set_user_attr(self, key: str, value) -> None:
        self.user_attrs[key] = value


def _history(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _stored(number: int, state: TrialState, rung: int, vector: list[float]):
    trial = create_trial(
        state=state,
        values=None if state != TrialState.COMPLETE else vector,
        user_attrs={f"{keys.PARETO_RUNG}{rung}": vector},
    )
    trial.number = number
    return trial


def _callback(tmp_path: Path, number: int, others: list, params: float, accuracy: float):
    from tunecb.training.pareto_pruning import ParetoPruning

    rows = [{"epoch": 1, "loss": 1.0, "val_accuracy": accuracy}]
    history = _history(tmp_path / f"h{number}.csv", rows)
    objectives = parse_objectives("val_accuracy:max,params:min")
    trial = _FakeTrial(number, others)
    cb = ParetoPruning(trial, objectives, {"params": params}, history, epochs=10)
    cb.rungs = {1}
    cb.set_model(SimpleNamespace(stop_training=False))
    return cb, trial


def test_a_dominated_trial_is_pruned_at_the_rung_and_stores_its_values(tmp_path):
    others = [
        _stored(0, TrialState.COMPLETE, 1, [0.9, 100.0]),
        _stored(1, TrialState.PRUNED, 1, [0.8, 50.0]),
        _stored(2, TrialState.RUNNING, 1, [0.85, 70.0]),
    ]
    cb, trial = _callback(tmp_path, 5, others, params=200.0, accuracy=0.5)
    cb.on_epoch_end(0, {"loss": 1.0, "val_accuracy": 0.5})
    assert cb.pruned_at == 1 and cb.model.stop_training
    assert trial.user_attrs == {f"{keys.PARETO_RUNG}1": [0.5, 200.0]}


def test_a_trial_on_the_rungs_front_goes_on_and_failed_trials_do_not_count(tmp_path):
    others = [
        _stored(0, TrialState.COMPLETE, 1, [0.9, 100.0]),
        _stored(1, TrialState.FAIL, 1, [0.99, 1.0]),  # a dead worker's: rerun, not counted
        _stored(2, TrialState.PRUNED, 1, [0.8, 50.0]),
    ]
    # on the front with (0.9, 100) and adding the most to it; (0.99, 1) would dominate it
    cb, _ = _callback(tmp_path, 5, others, params=10.0, accuracy=0.85)
    cb.on_epoch_end(0, {"loss": 1.0, "val_accuracy": 0.85})
    assert cb.pruned_at is None and not cb.model.stop_training


def test_a_metric_objective_the_model_does_not_log_fails_at_the_first_epoch(tmp_path):
    from tunecb.errors import MonitorError
    from tunecb.training.pareto_pruning import ParetoPruning

    objectives = parse_objectives("val_accuracy:max,val_auc:max,params:min")
    cb = ParetoPruning(None, objectives, {"params": 1.0}, tmp_path / "h.csv", epochs=3)
    with pytest.raises(MonitorError) as exc:
        cb.on_epoch_end(0, {"loss": 1.0, "val_accuracy": 0.5, "val_loss": 1.0})
    message = str(exc.value)
    assert "'val_auc'" in message and "['loss', 'val_accuracy', 'val_loss']" in message
    assert "'params', 'size_mb', 'latency_ms'" in message and "\n" not in message


# --- the front of a real Optuna study -------------------------------------------------------


def test_front_and_best_trial_of_an_in_memory_multi_objective_study():
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr(keys.STUDY_OBJECTIVES, "val_accuracy:max,params:min")
    for accuracy, params in ((0.9, 100.0), (0.8, 10.0), (0.7, 50.0)):
        trial = study.ask()
        trial.set_user_attr(keys.OBJECTIVES, {"val_accuracy": accuracy, "params": params})
        trial.set_user_attr(keys.BEST_VALUE, accuracy)
        study.tell(trial, [accuracy, params])
    trials = study.get_trials()
    assert front.front_numbers(trials, front.study_objectives(study)) == {0, 1}
    assert {t.number for t in study.best_trials} == {0, 1}  # Optuna agrees
    assert front.best_trial(study).number == 0
    assert front.monitor_value(front.best_trial(study)) == 0.9


def test_a_resumed_trial_stores_the_rungs_its_carried_over_epochs_passed(tmp_path):
    from tunecb.training.pareto_pruning import ParetoPruning

    rows = [
        {"epoch": 1, "loss": 1.0, "val_accuracy": 0.6},
        {"epoch": 2, "loss": 0.9, "val_accuracy": 0.8},
        {"epoch": 3, "loss": 0.8, "val_accuracy": 0.7},
    ]
    history = _history(tmp_path / "h.csv", rows)
    others = [_stored(0, TrialState.COMPLETE, 1, [0.99, 1.0])]  # would prune it at rung 1
    trial = _FakeTrial(7, others)
    objectives = parse_objectives("val_accuracy:max,params:min")
    cb = ParetoPruning(trial, objectives, {"params": 5.0}, history, epochs=30)
    assert cb.rungs == {1, 3, 9, 27}
    cb.set_model(SimpleNamespace(stop_training=False))
    cb.on_train_begin()
    assert trial.user_attrs == {  # the best epoch so far at each rung: 1, then 2
        f"{keys.PARETO_RUNG}1": [0.6, 5.0],
        f"{keys.PARETO_RUNG}3": [0.8, 5.0],
    }
    assert cb.pruned_at is None and not cb.model.stop_training  # judged before the kill


# --- the model's properties ----------------------------------------------------------------


class _FakeModel:
    def __init__(self) -> None:
        import numpy as np

        self.weights = [np.zeros((3, 4), "float32"), np.zeros(4, "float64")]
        self.batches: list = []

    def count_params(self) -> int:
        return 16

    def predict_on_batch(self, batch) -> None:
        self.batches.append(len(batch))


def test_properties_are_measured_by_name_and_a_users_function_by_its_own():
    import numpy as np

    from tunecb.training.objectives import LATENCY_BATCH, REPEATS, WARMUP, measure

    objectives = parse_objectives(
        {"val_accuracy": "max", "params": "min", "size_mb": "min", "latency_ms": "min",
         "layers": ("min", lambda model: len(model.weights))}
    )  # fmt: skip
    model = _FakeModel()
    data = SimpleNamespace(x=np.zeros((100, 3), "float32"), train=None)
    found = measure(model, data, objectives, "st.py")
    assert list(found) == ["params", "size_mb", "latency_ms", "layers"]
    assert found["params"] == 16.0 and found["layers"] == 2.0
    assert found["size_mb"] == (12 * 4 + 4 * 8) / 1e6
    assert found["latency_ms"] >= 0.0
    assert model.batches == [LATENCY_BATCH] * (WARMUP + REPEATS)  # a fixed batch, warmed up


def test_a_users_measure_that_returns_no_number_stops_the_search_in_one_line():
    from tunecb.errors import ModelError
    from tunecb.training.objectives import measure

    def flops(model):
        return float("nan")

    objectives = parse_objectives({"val_accuracy": "max", "flops": ("min", flops)})
    with pytest.raises(ModelError) as exc:
        measure(_FakeModel(), None, objectives, "st.py")
    assert str(exc.value) == (
        "objective 'flops': flops(model) in st.py returned nan; return a finite number"
    )


@pytest.mark.parametrize(
    "named, kind",
    [
        (None, optuna.samplers.TPESampler),
        ("nsgaii", optuna.samplers.NSGAIISampler),
        ("random", optuna.samplers.RandomSampler),
    ],
)
def test_a_multi_objective_study_gets_tpe_or_the_sampler_it_names(tmp_path, named, kind):
    """The default sampler of a multi-objective study is TPE (chosen by measurement,
    README); one it names is the one it gets, when created and when continued."""
    from tests.conftest import write_study
    from tunecb.oracle.opening import open_study
    from tunecb.results import StudyDir
    from tunecb.study.study_file import load_study_file

    settings = 'objectives={"val_accuracy": "max", "params": "min"}, epochs=2, n_trials=1'
    loaded = load_study_file(write_study(tmp_path, settings=settings))
    flags = {"sampler": named} if named else {}
    s = resolve(loaded.study.settings, flags, default_name=loaded.default_name,
                study_path=loaded.path)  # fmt: skip
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "optuna.journal"))
    )
    for created in (True, False):
        study, was_created, _ = open_study(loaded, s, StudyDir(tmp_path / "r" / "tiny"), storage)
        assert was_created == created and len(study.directions) == 2
        assert isinstance(study.sampler, kind)
        assert kind is not optuna.samplers.TPESampler or study.sampler._multivariate
