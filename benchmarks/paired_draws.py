"""Draw as tunecb does: the sampler and Keras seed that pair another system's search with
tunecb's (``search.py --paired``; common random numbers).

tunecb reseeds its sampler's random states per trial number from the study's seed
(:func:`tunecb.study.samplers_pruners.reseed`) and seeds each trial's Keras with
:func:`tunecb.training.trial_env.trial_seed`. A system that does both draws, for a seed, the
same random start-up configurations as tunecb (TPE's first 10 trials) and trains them alike,
so a difference in the best model is the search's (pruner, TPE's phase, workers), not which
random configurations a seed happened to draw. The hand loop (``search_loop.py``) and Ray
Tune's Optuna searcher (``search_ray.py``) use it with ``--tunecb-draws``.

A module of its own, importing neither Keras nor Ray: Ray pickles its searcher (and so this
sampler) by reference to this module.
"""

from __future__ import annotations

import optuna


class TunecbDrawsTPE(optuna.samplers.TPESampler):
    """Optuna's TPE whose random states are reseeded per trial number as tunecb's are.

    >>> import optuna
    >>> def draws(seed):
    ...     study = optuna.create_study(sampler=TunecbDrawsTPE(seed))
    ...     return [study.ask().suggest_float("x", 0, 1) for _ in range(3)]
    >>> draws(0) == draws(0), draws(0) == draws(1)
    (True, False)
    """

    def __init__(self, seed: int) -> None:
        super().__init__(seed=seed)
        self.stream_seed = seed

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        from tunecb.study.samplers_pruners import reseed

        super().before_trial(study, trial)
        reseed(self, self.stream_seed, trial.number)


def keras_seed(seed: int, number: int) -> int:
    """The Keras seed tunecb gives trial ``number`` of a study seeded ``seed``
    (:func:`tunecb.training.trial_env.trial_seed`, imported here when called: that module
    imports Keras, which Ray's driver process has no need of).

    >>> keras_seed(0, 3) == keras_seed(0, 3) != keras_seed(0, 4)
    True
    """
    from tunecb.training.trial_env import trial_seed

    return trial_seed(seed, number)
