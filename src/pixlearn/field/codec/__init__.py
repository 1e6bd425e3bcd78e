"""The image codec (`pixlearn compress` / `decompress`): an image as a quantised, entropy-coded field.

    compression.py  compress / decompress, CompressConfig, the rate search (latent grids, the default)
    gaussians.py    the `--model gaussians` path
    entropy.py      context-modelled Laplace coding with constriction's ANS coder
    container.py    the versioned .pxl layout: magic, version, header, checksum, limits
"""
