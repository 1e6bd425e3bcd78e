"""What both jobs share: the one image decoder, the run-directory format, the model spec, errors,
devices, torchrun set-up, progress bars, figures and Keras-style summaries. Imports nothing else of pixlearn."""
