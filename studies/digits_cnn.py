"""A small CNN on the same bundled digits, fed by a tf.data pipeline, with the
learning-rate schedule chosen by the search and a user callback (no download).

    tunecb search studies/digits_cnn.py
"""

import keras
import tensorflow as tf
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import tunecb

BATCH = 64

study = tunecb.Study(
    monitor="val_loss",  # direction "minimize" is inferred
    epochs=20,
    n_trials=12,
    pruner="median",
    seed=1,
    patience=4,
    lr_schedule="search",  # the trial suggests lr_schedule among none/plateau/cosine/step
)


@study.data
def load():
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32").reshape(-1, 8, 8, 1)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.25, stratify=y, random_state=0
    )
    train = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=0)
        .batch(BATCH)
        .prefetch(tf.data.AUTOTUNE)
    )
    val = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(BATCH)
    return train, val


@study.model
def build(trial):
    filters = trial.suggest_categorical("filters", [8, 16, 32])
    model = keras.Sequential(
        [
            keras.Input(shape=(8, 8, 1)),
            keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(2 * filters, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dropout(trial.suggest_float("dropout", 0.0, 0.5)),
            keras.layers.Dense(trial.suggest_int("dense", 32, 128, step=32), activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(trial.suggest_float("lr", 3e-4, 1e-2, log=True)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


class BatchLogger(keras.callbacks.Callback):
    """Prints loss and accuracy after every `every`-th batch (every batch with every=1)."""

    def __init__(self, trial_number, every=10):
        super().__init__()
        self.trial_number, self.every = trial_number, every

    def on_train_batch_end(self, batch, logs=None):
        if batch % self.every == 0:
            logs = logs or {}
            print(
                f"  trial {self.trial_number} batch {batch:3d}: "
                f"loss {logs.get('loss', float('nan')):.4f} "
                f"accuracy {logs.get('accuracy', float('nan')):.4f}"
            )


@study.callbacks
def callbacks(trial):
    return [BatchLogger(trial.number, every=20)]
