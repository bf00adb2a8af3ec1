"""Running one trial in this process: the runner, our Keras callbacks, backups and
TensorBoard logs. The only layer that imports Keras to train."""
