"""`python -m pyintro.cli`: the same as the `pyintro` command."""

from pyintro.cli import main

main()
