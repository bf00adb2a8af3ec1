"""The ``tunecb`` command: the only package that prints.

>>> main(["report", "results/digits", "--top", "5"])  # doctest: +SKIP
"""

from tunecb.cli.commands import main
from tunecb.cli.parser import build_parser

__all__ = ["build_parser", "main"]
