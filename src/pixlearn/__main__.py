"""`python -m pixlearn` is the `pixlearn` command (and what torchrun launches with -m)."""

from .cli import main

main()
