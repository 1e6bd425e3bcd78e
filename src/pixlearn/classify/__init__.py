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

from pixlearn.core.lazy import exports

# The verbs, imported when first used: the command line reads only the config module at start-up.
__all__, __getattr__ = exports(
    __name__,
    {
        "TrainConfig": "pixlearn.classify.config",
        "run_demo": "pixlearn.classify.demo",
        "Evaluation": "pixlearn.classify.evaluation",
        "evaluate": "pixlearn.classify.evaluation",
        "Prediction": "pixlearn.classify.prediction",
        "Predictor": "pixlearn.classify.prediction",
        "predict": "pixlearn.classify.prediction",
        "TrainResult": "pixlearn.classify.training",
        "train": "pixlearn.classify.training",
    },
)
