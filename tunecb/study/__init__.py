"""What a study declares: the ``Study`` object, its settings table, schedules, data and the
sampler and pruner names. The lowest layer above ``errors`` and ``results``; no Keras."""
