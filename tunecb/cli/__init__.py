"""The ``tunecb`` command: the only package that prints.

>>> main(["report", "results/digits", "--top", "5"])  # doctest: +SKIP
"""

from tunecb.cli.commands import build_parser, main

__all__ = ["build_parser", "main"]
