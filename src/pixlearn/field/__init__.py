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

from pixlearn.field.comparison import compare
from pixlearn.field.config import FitConfig
from pixlearn.field.fit import FitResult, fit_image
from pixlearn.field.rendering import render

__all__ = ["FitConfig", "FitResult", "compare", "fit_image", "render"]
