"""What pixlearn keeps on disk: the run directory, a model's weights and spec, checkpoints, locks,
integrity checks and the one way to open a data file."""
