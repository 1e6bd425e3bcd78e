"""Classifying folders of images (the first seed): a package per step.

    config.py     TrainConfig and ExportConfig: every option, typed, with its default and help
    data/         folders and CSVs to labelled uint8 image sets; splits; folders larger than memory
    inference/    applying a model: logits, probabilities, labels, features, predictions, ONNX
    evaluation/   scoring a model; fitting its temperature and thresholds
    training/     the one training loop and its parts; transfer learning; recipes
    audit/        the data check (`pixlearn check`)
    demo.py       the embedded demo

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
        "ExportConfig": "pixlearn.classify.config",
        "CheckConfig": "pixlearn.classify.audit.inspection",
        "check": "pixlearn.classify.audit.inspection",
        "export": "pixlearn.classify.inference.onnx",
        "run_demo": "pixlearn.classify.demo",
        "Evaluation": "pixlearn.classify.evaluation.interpretation",
        "evaluate": "pixlearn.classify.evaluation.interpretation",
        "Prediction": "pixlearn.classify.inference.prediction",
        "Predictor": "pixlearn.classify.inference.prediction",
        "predict": "pixlearn.classify.inference.prediction",
        "TrainResult": "pixlearn.classify.training.loop",
        "train": "pixlearn.classify.training.loop",
        "LrFindResult": "pixlearn.classify.training.lr_find",
        "lr_find": "pixlearn.classify.training.range_test",
    },
)
