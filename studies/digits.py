"""An MLP on scikit-learn's bundled 8x8 digits (no download): the README's main example.

tunecb search studies/digits.py
tunecb report results/digits
"""

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import tunecb

study = tunecb.Study(
    monitor="val_accuracy",  # direction "maximize" is inferred from the name
    epochs=30,
    batch_size=64,
    n_trials=30,
    sampler="tpe",
    pruner="hyperband",
    seed=0,
    patience=6,
    min_delta=1e-3,
    lr_schedule="cosine",
)


@study.data
def load():
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.25, stratify=y, random_state=0
    )
    return (x_train, y_train), (x_val, y_val)


@study.model
def build(trial):
    model = keras.Sequential([keras.Input(shape=(64,))])
    for i in range(trial.suggest_int("layers", 1, 3)):
        units = trial.suggest_int(f"units_{i}", 16, 256, log=True)
        activation = trial.suggest_categorical(f"activation_{i}", ["relu", "gelu"])
        model.add(keras.layers.Dense(units, activation=activation))
        model.add(keras.layers.Dropout(trial.suggest_float(f"dropout_{i}", 0.0, 0.5)))
    model.add(keras.layers.Dense(10, activation="softmax"))
    model.compile(
        optimizer=keras.optimizers.Adam(trial.suggest_float("lr", 1e-4, 3e-2, log=True)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
