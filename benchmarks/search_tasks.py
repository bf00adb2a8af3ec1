"""The tasks and the search space of ``benchmarks/search.py``, shared by every system.

Each task is a name, a monitored metric with its direction, and a data function that returns
``(x_train, y_train), (x_val, y_val)`` as float32 arrays (scikit-learn's bundled or generated
data: no download). :func:`build` makes the same compiled MLP for every system from the four
hyperparameters; :func:`suggest` (Optuna: tunecb's study files and the hand loop) and
:func:`kt_params` (KerasTuner) spell the same space in each API.

Importing this module imports neither TensorFlow nor Keras (``search.py`` reads the task
list without them); :func:`build` imports Keras when it is called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Arrays = tuple[np.ndarray, np.ndarray]
Split = tuple[Arrays, Arrays]

# The search space: layers 1-3, units 16-256 (log), dropout 0-0.5, Adam's rate 1e-4..3e-2 (log).
# The units and the dropout are shared by all layers: four hyperparameters in all. A task with
# ``per_layer`` draws the units of each layer (units_0, units_1, ... for the layers drawn): a
# conditional space, the README's own, whose units_1 and units_2 exist only in deeper models.
LAYERS = (1, 3)
UNITS = (16, 256)
DROPOUT = (0.0, 0.5)
LEARNING_RATE = (1e-4, 3e-2)
VAL_FRACTION = 0.25
DATA_SEED = 0  # the split and the generated data are the same for every seed and system


@dataclass(frozen=True)
class Task:
    name: str
    monitor: str
    direction: str  # "maximize" or "minimize"
    n_features: int
    n_outputs: int  # classes; 1 for regression
    about: str
    load: Callable[[], Split]
    image: tuple[int, int, int] | None = None  # (height, width, channels): a CNN, not an MLP
    per_layer: bool = False  # units drawn per layer: a conditional space

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    @property
    def regression(self) -> bool:
        return self.n_outputs == 1


def _split(x: np.ndarray, y: np.ndarray, stratify: bool) -> Split:
    from sklearn.model_selection import train_test_split

    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=VAL_FRACTION, random_state=DATA_SEED, stratify=y if stratify else None
    )
    return (x_train, y_train), (x_val, y_val)


def _standardize(train: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both scaled with the training part's mean and standard deviation."""
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return ((train - mean) / std).astype("float32"), ((val - mean) / std).astype("float32")


def load_digits() -> Split:
    """scikit-learn's 8x8 digits: 1,797 images, 64 pixels scaled to [0, 1], 10 classes."""
    from sklearn.datasets import load_digits as digits

    x, y = digits(return_X_y=True)
    return _split((x / 16.0).astype("float32"), y.astype("int32"), stratify=True)


def load_digit_images() -> Split:
    """The digits as 8 x 8 x 1 images (pixels in [0, 1]), the same split as ``digits``."""
    (x_train, y_train), (x_val, y_val) = load_digits()
    return (x_train.reshape(-1, 8, 8, 1), y_train), (x_val.reshape(-1, 8, 8, 1), y_val)


TABULAR_ROWS = 4000
TABULAR_FEATURES = 40


def _classification(**params: Any) -> Split:
    """``make_classification(**params)`` (seeded :data:`DATA_SEED`), split stratified and
    standardized with the training part's statistics."""
    from sklearn.datasets import make_classification

    x, y = make_classification(random_state=DATA_SEED, **params)
    (x_train, y_train), (x_val, y_val) = _split(x, y.astype("int32"), stratify=True)
    x_train, x_val = _standardize(x_train, x_val)
    return (x_train, y_train), (x_val, y_val)


def load_tabular() -> Split:
    """``make_classification``: 4,000 rows x 40 features (10 informative, 10 redundant, the
    rest noise), 3 classes of 2 clusters each, 3 % of labels flipped; standardized."""
    return _classification(
        n_samples=TABULAR_ROWS, n_features=TABULAR_FEATURES, n_informative=10, n_redundant=10,
        n_classes=3, n_clusters_per_class=2, class_sep=0.8, flip_y=0.03,
    )  # fmt: skip


def load_diabetes() -> Split:
    """scikit-learn's diabetes regression: 442 patients, 10 features; X and y standardized
    with the training part's statistics (so val_loss is the MSE in units of y's variance)."""
    from sklearn.datasets import load_diabetes as diabetes

    x, y = diabetes(return_X_y=True)
    (x_train, y_train), (x_val, y_val) = _split(x, y.reshape(-1, 1), stratify=False)
    x_train, x_val = _standardize(x_train, x_val)
    y_train, y_val = _standardize(y_train, y_val)
    return (x_train, y_train), (x_val, y_val)


FRIEDMAN_ROWS = 2_000


def load_friedman() -> Split:
    """``make_friedman1``: 2,000 rows x 10 features (5 of them noise), a smooth nonlinear
    regression (``10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + 5 x5``) with noise 1.0; X and y
    standardized with the training part's statistics. Added as a task the defaults were not
    chosen on."""
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=FRIEDMAN_ROWS, n_features=10, noise=1.0,
                          random_state=DATA_SEED)  # fmt: skip
    (x_train, y_train), (x_val, y_val) = _split(x, y.reshape(-1, 1), stratify=False)
    x_train, x_val = _standardize(x_train, x_val)
    y_train, y_val = _standardize(y_train, y_val)
    return (x_train, y_train), (x_val, y_val)


LARGE_ROWS = 24_000


def load_large() -> Split:
    """``make_classification``: 24,000 rows x 40 features (12 informative, 8 redundant), 2
    classes of 3 clusters each, 2 % of labels flipped; standardized. The heavier task (18,000
    training rows: 282 batches of 64, 0.5-1.1 s an epoch in the hand loop), like the unseen
    tabular task of issue 19; added after the defaults were chosen."""
    return _classification(
        n_samples=LARGE_ROWS, n_features=40, n_informative=12, n_redundant=8, n_classes=2,
        n_clusters_per_class=3, class_sep=1.0, flip_y=0.02,
    )  # fmt: skip


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("digits", "val_accuracy", "maximize", 64, 10, "sklearn load_digits, 10 classes",
             load_digits),
        Task("tabular", "val_accuracy", "maximize", TABULAR_FEATURES, 3,
             f"make_classification {TABULAR_ROWS}x{TABULAR_FEATURES}, 3 classes", load_tabular),
        Task("diabetes", "val_loss", "minimize", 10, 1,
             "sklearn load_diabetes, MSE (standardized)", load_diabetes),
        Task("friedman", "val_loss", "minimize", 10, 1,
             f"make_friedman1 {FRIEDMAN_ROWS}x10, MSE (standardized)", load_friedman),
        Task("large", "val_accuracy", "maximize", 40, 2,
             f"make_classification {LARGE_ROWS}x40, 2 classes (compute-heavy)", load_large),
        Task("cnn", "val_accuracy", "maximize", 64, 10,
             "sklearn load_digits as 8x8 images, a small CNN (epochs are arithmetic)",
             load_digit_images, image=(8, 8, 1)),
        Task("perlayer", "val_accuracy", "maximize", TABULAR_FEATURES, 3,
             "the tabular data, units drawn per layer (a conditional space)", load_tabular,
             per_layer=True),
    )
}  # fmt: skip


def build(
    task: Task, layers: int, dropout: float, lr: float, units: int | None = None,
    **per_layer: int,
) -> Any:  # fmt: skip
    """The compiled model of ``task``: an MLP of ``layers`` x (Dense(units, relu),
    Dropout(dropout)), or for an image task a CNN of ``layers`` x (Conv2D(filters, 3 x 3,
    same, relu), Dropout(dropout)) with ``filters`` = :func:`filters` (``units``), then global
    average pooling; then softmax (sparse cross-entropy, accuracy) or one linear unit (MSE);
    Adam(lr). ``units_0``, ``units_1``, ... (``per_layer``) are each layer's units where
    ``units`` is not given."""
    import keras

    widths = [units if units is not None else per_layer[f"units_{i}"] for i in range(layers)]
    shape = task.image or (task.n_features,)
    model = keras.Sequential([keras.Input(shape=shape)])
    for width in widths:
        if task.image:
            model.add(keras.layers.Conv2D(filters(width), 3, padding="same", activation="relu"))
        else:
            model.add(keras.layers.Dense(width, activation="relu"))
        model.add(keras.layers.Dropout(dropout))
    if task.image:
        model.add(keras.layers.GlobalAveragePooling2D())
    if task.regression:
        model.add(keras.layers.Dense(1))
        model.compile(optimizer=keras.optimizers.Adam(lr), loss="mse")
    else:
        model.add(keras.layers.Dense(task.n_outputs, activation="softmax"))
        model.compile(
            optimizer=keras.optimizers.Adam(lr),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    return model


def filters(units: int) -> int:
    """A CNN layer's filters for the space's ``units`` (16-256): a quarter (4-64), so that
    the widest three-layer CNN trains an epoch of the digit images in about a second on one
    core, not ten.

    >>> filters(16), filters(100), filters(256)
    (4, 25, 64)
    """
    return max(1, units // 4)


def suggest(trial: Any, task: Task | None = None) -> dict[str, Any]:
    """The space of ``task`` in Optuna's API (an ``optuna.Trial``): :func:`build`'s keywords.

    >>> import optuna
    >>> trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(0)).ask()
    >>> sorted(suggest(trial)), sorted(suggest(trial, TASKS["perlayer"]))[:3]
    (['dropout', 'layers', 'lr', 'units'], ['dropout', 'layers', 'lr'])
    """
    layers = trial.suggest_int("layers", *LAYERS)
    if task is not None and task.per_layer:
        units = {f"units_{i}": trial.suggest_int(f"units_{i}", *UNITS, log=True)
                 for i in range(layers)}  # fmt: skip
    else:
        units = {"units": trial.suggest_int("units", *UNITS, log=True)}
    return {
        "layers": layers,
        **units,
        "dropout": trial.suggest_float("dropout", *DROPOUT),
        "lr": trial.suggest_float("lr", *LEARNING_RATE, log=True),
    }


def kt_params(hp: Any, task: Task | None = None) -> dict[str, Any]:
    """The same space in KerasTuner's API (a ``keras_tuner.HyperParameters``)."""
    layers = hp.Int("layers", *LAYERS)
    if task is not None and task.per_layer:
        units = {f"units_{i}": hp.Int(f"units_{i}", *UNITS, sampling="log")
                 for i in range(layers)}  # fmt: skip
    else:
        units = {"units": hp.Int("units", *UNITS, sampling="log")}
    return {
        "layers": layers,
        **units,
        "dropout": hp.Float("dropout", *DROPOUT),
        "lr": hp.Float("lr", *LEARNING_RATE, sampling="log"),
    }
