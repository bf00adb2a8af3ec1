"""A monitor whose name says which way is better, optimised the other way: refused before
the first trial (the search would keep each trial's worst epoch, and rank the worst model
first).

Only names whose way is fixed are refused: Keras' losses and error metrics (``loss``,
``val_loss``, ``mae``, ``mean_squared_error``, any name ending in ``loss``, ``error`` or
``crossentropy``) go down; accuracies and scores (``accuracy``, ``val_auc``, ``precision``,
``recall``, ``f1_score``, ``r2_score``) go up. A metric of the user's own that should go the
other way is given a name that says so (``name=`` of the metric): tunecb, and the reader of
the report, tell the way from the name.

>>> check_direction("val_loss", "minimize")
>>> check_direction("val_loss", "maximize")
Traceback (most recent call last):
...
tunecb.errors.ConfigError: direction= 'maximize' with monitor 'val_loss': a loss goes down ...
"""

from __future__ import annotations

from tunecb.errors import ConfigError

_DOWN_NAMES = frozenset(
    {"mae", "mse", "rmse", "mape", "msle", "logcosh", "log_cosh", "hinge", "squared_hinge",
     "categorical_hinge", "kld", "kl_divergence", "poisson", "huber"}
)  # fmt: skip
_DOWN_ENDINGS = ("loss", "error", "crossentropy")
_UP_NAMES = frozenset(
    {"acc", "auc", "prc", "precision", "recall", "f1_score", "fbeta_score", "r2_score",
     "iou", "mean_iou", "one_hot_iou", "one_hot_mean_iou", "binary_iou"}
)  # fmt: skip
_UP_ENDINGS = ("accuracy",)


def fixed_direction(monitor: str) -> str | None:
    """``"minimize"`` or ``"maximize"`` when the metric's name fixes which way is better
    (``val_`` and a Keras suffix such as ``_1`` aside), else ``None``.

    >>> fixed_direction("val_sparse_categorical_accuracy"), fixed_direction("val_mae")
    ('maximize', 'minimize')
    >>> fixed_direction("val_auc_1"), fixed_direction("my_score") is None
    ('maximize', True)
    """
    base = monitor.lower().removeprefix("val_")
    stem, _, suffix = base.rpartition("_")
    if stem and suffix.isdigit():  # Keras names a second AUC "auc_1"
        base = stem
    if base in _DOWN_NAMES or base.endswith(_DOWN_ENDINGS):
        return "minimize"
    if base in _UP_NAMES or base.endswith(_UP_ENDINGS):
        return "maximize"
    return None


def check_direction(monitor: str, direction: str, where: str = "direction=") -> None:
    """Refuse ``direction`` when ``monitor``'s name fixes the other way (``where`` names
    the setting, e.g. ``--direction``)."""
    fixed = fixed_direction(monitor)
    if fixed is None or fixed == direction:
        return
    if fixed == "maximize":
        what, way = "a score", "up"
    else:
        what, way = ("a loss" if "loss" in monitor.lower() else "an error"), "down"
    raise ConfigError(
        f"{where} {direction!r} with monitor {monitor!r}: {what} goes {way} as the model "
        "gets better, so the search "
        f"would keep each trial's worst epoch; use direction='{fixed}' (or 'auto'), or if "
        f"{monitor!r} is a metric of your own that should go the other way, give it a name "
        "that says so (the metric's name=)"
    )
