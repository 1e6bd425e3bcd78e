"""Learning an image as a function of its pixel coordinates (the second seed).

coords.py   the one coordinate grid, the pixel table, samplers and the held-out split
image.py    the image being fitted (through the one decoder)
config.py   FitConfig and each model's training preset
metrics.py  MSE, PSNR, SSIM, parameter and byte counts
fit.py      the one fitting loop for every field model, and a fit end to end
render.py   evaluating a fitted model on any grid; PNG output; readable weights
compare.py  several models on one image under one budget

>>> from pixlearn.field import FitConfig, fit_image, render, compare
>>> FitConfig(model="hashgrid").resolved().batch
4096
"""

import importlib
from typing import Any

# The verbs, imported when first used: importing one module of the package (the command line reads
# only its config) does not load every other one.
_EXPORTS = {
    "compare": "pixlearn.field.comparison",
    "FitConfig": "pixlearn.field.config",
    "FitResult": "pixlearn.field.fit",
    "fit_image": "pixlearn.field.fit",
    "render": "pixlearn.field.rendering",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
