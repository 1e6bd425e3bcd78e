"""Learning an image as a function of its pixel coordinates (the second seed).

coords.py      the one coordinate grid, the pixel table, samplers and the held-out split
image.py       the image being fitted (through the one decoder)
config.py      FitConfig and each model's training preset (its CPU-best settings); CompareConfig
metrics.py     MSE, PSNR, SSIM, parameter and byte counts
fit.py         the one fitting loop for every field model, and a fit end to end
outputs.py     a fit's run directory: model, figures, history, readable weights, original.png
timing.py      each phase's seconds, and the line that reports them
comparison.py  several models on one image under one budget
rendering/     evaluating a fitted model on any grid; the final render's plan; seed-deep's saturation
codec/         compress / decompress: an image as a quantised, entropy-coded field (.pxl)

>>> from pixlearn.field import FitConfig, fit_image, render, compare
>>> FitConfig(model="hashgrid").resolved().batch
4096
"""

from pixlearn.core.lazy import exports

# The verbs, imported when first used: the command line reads only the config module at start-up.
__all__, __getattr__ = exports(
    __name__,
    {
        "CompressConfig": "pixlearn.field.codec.compression",
        "CompressResult": "pixlearn.field.codec.compression",
        "DecompressResult": "pixlearn.field.codec.compression",
        "compare": "pixlearn.field.comparison",
        "CompareConfig": "pixlearn.field.config",
        "compress": "pixlearn.field.codec.compression",
        "decompress": "pixlearn.field.codec.compression",
        "FitConfig": "pixlearn.field.config",
        "FitResult": "pixlearn.field.fit",
        "fit_image": "pixlearn.field.fit",
        "render": "pixlearn.field.rendering.renderer",
    },
)
