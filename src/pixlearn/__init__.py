"""pixlearn: learn from images with neural networks on an ordinary CPU.

The front door: every verb, its config and its result, loaded on first use (so `import pixlearn`
imports no torch). Each verb has one shape, `verb(source, out=None, config=XConfig(), progress=None)
-> XResult` (evaluate and predict take the run, then the images):

- classify folders of images: `train`, `evaluate`, `predict`, `Predictor`, `check`, `export`;
- learn an image as a function of its pixel coordinates: `fit_image`, `render`, `compare`,
  `compress`, `decompress`;
- the networks: `list_models()`, `load_model(run)`.

The README's quickstart lists exactly `__all__`; a few more names are loaded the same way and documented
in the guides instead (docs/guides/python.md): `lr_find` and its `LrFindResult`, the learning-rate sweep
of a `TrainConfig` (`pixlearn lr-find`).

The packages behind it: `pixlearn.classify`, `pixlearn.field`, `pixlearn.models`, `pixlearn.report`,
`pixlearn.core`, and `pixlearn.cli` (the `pixlearn` command, a thin layer over the verbs).

    >>> import pixlearn
    >>> pixlearn.__version__
    '0.1.0'
    >>> pixlearn.TrainConfig(model="seed-cnn").epochs > 0
    True
"""

from pixlearn.core.lazy import exports

__version__ = "0.1.0"

_CLASSIFY, _FIELD = "pixlearn.classify.", "pixlearn.field."
# name -> the module that defines it, imported when the name is first used
__all__, __getattr__ = exports(
    __name__,
    {
        "train": _CLASSIFY + "training.loop",
        "TrainConfig": _CLASSIFY + "config",
        "TrainResult": _CLASSIFY + "training.loop",
        "evaluate": _CLASSIFY + "evaluation.interpretation",
        "EvaluateConfig": _CLASSIFY + "config",
        "EvaluateResult": _CLASSIFY + "evaluation.interpretation",
        "predict": _CLASSIFY + "inference.prediction",
        "Predictor": _CLASSIFY + "inference.prediction",
        "PredictConfig": _CLASSIFY + "config",
        "PredictResult": _CLASSIFY + "inference.prediction",
        "check": _CLASSIFY + "audit.inspection",
        "CheckConfig": _CLASSIFY + "audit.inspection",
        "CheckResult": _CLASSIFY + "audit.inspection",
        "export": _CLASSIFY + "inference.onnx",
        "ExportConfig": _CLASSIFY + "config",
        "ExportResult": _CLASSIFY + "inference.onnx",
        "fit_image": _FIELD + "fit",
        "FitConfig": _FIELD + "config",
        "FitResult": _FIELD + "fit",
        "render": _FIELD + "rendering.renderer",
        "RenderConfig": _FIELD + "config",
        "RenderResult": _FIELD + "rendering.renderer",
        "compare": _FIELD + "comparison",
        "CompareConfig": _FIELD + "config",
        "CompareResult": _FIELD + "comparison",
        "compress": _FIELD + "codec.compression",
        "CompressConfig": _FIELD + "codec.compression",
        "CompressResult": _FIELD + "codec.compression",
        "decompress": _FIELD + "codec.compression",
        "DecompressResult": _FIELD + "codec.compression",
        "load_model": "pixlearn.models.loading",
        "list_models": "pixlearn.models.registry",
    },
)
# Beyond the quickstart: loaded on first use like the names above, documented in docs/guides/python.md.
GUIDED, _guided = exports(
    __name__,
    {
        "lr_find": _CLASSIFY + "training.range_test",
        "LrFindResult": _CLASSIFY + "training.lr_find",
    },
)
_quickstart = __getattr__


def __getattr__(name: str) -> object:  # noqa: F811 - the two tables' lookups, in one
    return (_guided if name in GUIDED else _quickstart)(name)


def __dir__() -> list[str]:
    return sorted([*__all__, *GUIDED, "__version__"])
