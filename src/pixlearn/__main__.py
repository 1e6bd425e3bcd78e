"""`python -m pixlearn` is the `pixlearn` command (and what torchrun launches with -m)."""

from pixlearn.cli import main

main()
