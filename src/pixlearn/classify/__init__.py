"""Classifying folders of images (the first seed): each step in its own module.

    folders.py   folder trees, label rules (first / leaf / --group), train/test splits
    decoding.py  decoding files into uint8 image sets in parallel; the data summary
    streaming.py folders larger than memory: lazy decoding and the memory-mapped cache
    config.py    TrainConfig: every training option, typed, with its default and help
    batches.py   epoch shares, augmentation, the one inference loop
    losses.py    softmax / the seed's sigmoid head; probabilities
    train.py     the one training loop for every registered classifier
    evaluate.py  confusion matrices, conditional error rates, galleries of mistakes
    predict.py   Predictor and folder prediction to CSV
    recipes.py   named training presets; datasets.py Fashion-MNIST; demo.py the embedded demo

The verbs, as the command line has them:

    >>> from pixlearn.classify import TrainConfig, train, evaluate, Predictor, predict
    >>> TrainConfig(model="seed-cnn").resolved().size
    150
"""

from pixlearn.classify.config import TrainConfig
from pixlearn.classify.demo import run_demo
from pixlearn.classify.evaluation import Evaluation, evaluate
from pixlearn.classify.prediction import Prediction, Predictor, predict
from pixlearn.classify.training import TrainResult, train

__all__ = [
    "Evaluation",
    "Prediction",
    "Predictor",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "predict",
    "run_demo",
    "train",
]
