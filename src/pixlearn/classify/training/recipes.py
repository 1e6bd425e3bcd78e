"""Named training presets: a TrainConfig (model included) that is known to work, with its measured result.

    >>> from pixlearn.classify.training.recipes import get_recipe, list_recipes
    >>> "fashion-mnist" in list_recipes()
    True
    >>> get_recipe("fashion-mnist").model
    'airnet-small'

From the command line: `pixlearn train DATA --recipe fashion-mnist` (options given beside the
recipe override it). Each recipe's docstring states what it reached, on which machine, with the
command that measured it (bench/README.md holds the full figures).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import MappingProxyType

from pixlearn.classify.training.loop import TrainConfig
from pixlearn.core.errors import ConfigError


def list_recipes() -> list[str]:
    """Names of every recipe, sorted."""
    return sorted(_RECIPES)


def get_recipe_fn(name: str) -> Callable[[], TrainConfig]:
    if name not in _RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose one of {', '.join(list_recipes())}")
    return _RECIPES[name]


def get_recipe(name: str, **overrides: object) -> TrainConfig:
    """A fresh TrainConfig of recipe `name`, with `overrides` (TrainConfig field names) applied."""
    config = get_recipe_fn(name)()
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"recipe {name!r}: unknown option(s) {', '.join(unknown)}")
    return dataclasses.replace(config, **overrides)


def fashion_mnist() -> TrainConfig:
    """Fashion-MNIST, 10 classes, 28x28 grey: airnet-small, 20 epochs, one-cycle Nesterov SGD, flips,
    2-px shifts, random erasing (a quarter of the images), mirror-translate TTA; trains on all 60,000
    images and validates on the test set every 5th epoch.

    Measured with `python bench/bench_fashion.py --seeds 3` on a 2-core AMD EPYC (AVX512-BF16, bf16):
    94.70 / 94.83 / 94.89% (seeds 0-2, mean 94.81%), each within the 10-minute training budget on 2
    threads (bench/README.md, "4 and 6. Fashion-MNIST in a 10-minute training budget; memory (`bench_fashion.py`)").
    With the mirror alone the same models score 94.50 / 94.76 / 94.63%.
    """
    return TrainConfig(
        model="airnet-small",
        size=28,
        val_split=0.0,  # train on all 60,000 images; validate on the test set, as the published figures do
        color="grayscale",
        optimizer="sgd",
        lr=0.2,
        weight_decay=5e-4,
        label_smoothing=0.1,
        # 20 epochs leave room in the 10-minute budget, and validating 4 times rather than 20 keeps more of it
        # for training: with val_split 0 the per-epoch figures only inform
        # (bench/README.md, "Training threads and the fashion-mnist recipe's length")
        epochs=20,
        val_every=5,
        batch_size=256,
        schedule="onecycle",
        warmup_epochs=1.0,
        flip=True,
        shift=0.07,
        erase=0.25,  # a regulariser for the longer schedule; at 12 epochs erasing half the images cost 0.1 point
        tta=True,
        tta_shift=1,  # +0.2 points at evaluation for 4 more passes (bench/README.md, section 4); not in training time
    )


def seed_fast() -> TrainConfig:
    """The first seed's network and head (seed-cnn, 150x150 grey, sigmoid), 10 epochs, batch 10, Adam 1e-3.

    The seed's own settings with pixlearn's speed defaults (thread choice, channels-last, bf16 where native):
    bench/bench_train.py measures its training steps against the Keras peer and a plain PyTorch loop.
    """
    return TrainConfig(
        model="seed-cnn",
        size=150,
        color="grayscale",
        head="sigmoid",
        epochs=10,
        batch_size=10,
        optimizer="adam",
        val_split=0.0,  # the seed's pipeline: all of train/, the test set as validation
    )


# name -> the function that makes a fresh TrainConfig of it; read-only, listed once here
_RECIPES = MappingProxyType({"fashion-mnist": fashion_mnist, "seed-fast": seed_fast})
