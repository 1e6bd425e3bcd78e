"""pixlearn: learn from images with neural networks on an ordinary CPU.

Two jobs, each a handful of verbs with the same names on the command line and in Python:

- classify folders of images: `pixlearn.train.train`, `pixlearn.evaluate.evaluate`,
  `pixlearn.predict.Predictor` / `predict`, `pixlearn.summary.format_summary`, `pixlearn.demo.run_demo`;
- learn an image as a function of its pixel coordinates: `pixlearn.fit`.

Models are registered by name: `pixlearn.models.list_models()`.

    >>> import pixlearn
    >>> pixlearn.__version__
    '0.1.0'
"""

__version__ = "0.1.0"
