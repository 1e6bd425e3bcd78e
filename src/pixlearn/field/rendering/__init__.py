"""Rendering a fitted field at any size.

    renderer.py    colours at any pixel grid, in chunks; bf16 copies; PNG output; readable weights
    saturation.py  seed-deep's render where its tanh is saturated, from its weights
    plan.py        the final render planned before training and run in the precision it chose
"""
