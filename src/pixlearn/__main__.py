"""`python -m pixlearn` is the `pixlearn` command (and what torchrun launches with -m)."""

from pixlearn.cli import main

if __name__ == "__main__":  # importing this module runs nothing
    main()
