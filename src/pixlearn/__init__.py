"""pixlearn: learn from images with neural networks on an ordinary CPU.

Two jobs, each a package of one module per step, over a shared core:

- `pixlearn.classify`: classify folders of images (train, evaluate, Predictor / predict, the demo);
- `pixlearn.field`: learn an image as a function of its pixel coordinates (fit_image, render, compare);
- `pixlearn.models`: every network, registered by name (`list_models()`), and loading a saved one;
- `pixlearn.report`: report.html for any run directory; `pixlearn.core`: what both jobs share;
- `pixlearn.cli`: the `pixlearn` command, a thin layer over the above.

    >>> import pixlearn
    >>> pixlearn.__version__
    '0.1.0'
"""

__version__ = "0.1.0"
