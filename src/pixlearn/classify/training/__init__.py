"""Training a classifier: the one loop and what it is made of.

loop.py       `train`: the one loop every registered classifier uses (resume, torchrun, early stopping)
steps.py      the optimisation step over one epoch's batches
lr_find.py    the learning-rate sweep (fastai's lr_find) and --lr auto; range_test.py: `lr_find` itself
inputs.py     each process's share of an epoch, and a batch's augmentation
augment.py    photo augmentations: resized crops, rotations, colour jitter
sampling.py   class weights and balanced draws for unbalanced folders
transfer.py   pretrained starts: --freeze on cached features, fine-tuning's two phases
stopping.py   early stopping that keeps the best epoch
resuming.py   the checks that a resumed run continues the same run
recipes.py    named presets (`--recipe`)
"""
