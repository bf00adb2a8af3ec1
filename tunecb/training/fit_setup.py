"""How a trial's ``model.fit`` is set up, the same for the search and for ``tunecb retrain``:
its batches per backend call (:mod:`.fast_fit`), its data fed from one pipeline where that
reproduces the fit (:mod:`.one_pipeline`), and TensorFlow's graph optimizer options for it
(:mod:`.grappler`, applied by the caller around the fit with :func:`.grappler.applied`).

Example::

    arguments, options = prepare(model, settings, callbacks, arguments, expected=20,
                                 seed=seed, initial_epoch=0, epochs=settings.epochs)
    with grappler.applied(options):
        model.fit(**arguments, epochs=settings.epochs, callbacks=callbacks)
"""

from __future__ import annotations

from typing import Any

from tunecb.training import fast_fit, grappler, one_pipeline


def prepare(
    model: Any, settings: Any, callbacks: list[Any], arguments: dict[str, Any], *,
    expected: int | None, seed: int, initial_epoch: int, epochs: int,
) -> tuple[dict[str, Any], dict[str, bool]]:  # fmt: skip
    """The arguments to fit ``model`` (compiled, not yet fitted) with, and the Grappler
    options for the fit: ``settings``' ``steps_per_execution`` and ``graph_optimizer``,
    a fit from ``initial_epoch`` to ``epochs`` expected to train ``expected`` epochs."""
    compiled = int(getattr(model, "steps_per_execution", 1) or 1)
    fast_fit.apply(model, settings.steps_per_execution, callbacks, arguments, expected)
    arguments = one_pipeline.feed(
        model, settings.steps_per_execution, compiled, arguments,
        seed=seed, initial_epoch=initial_epoch, epochs=epochs,
    )  # fmt: skip
    return arguments, grappler.for_model(settings.graph_optimizer, model)
