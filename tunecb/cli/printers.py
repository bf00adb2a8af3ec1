"""Where the ``tunecb`` command prints: stdout (:func:`out`) and stderr (:func:`err`), and
the search's progress printer (:func:`make_printer`, from :mod:`tunecb.progress.printers`)
writing there. With :mod:`tunecb.cli.commands`, the only code of the CLI that prints.

>>> printer = make_printer(log_format="text", quiet=True, verbose=0)  # doctest: +SKIP
"""

from __future__ import annotations

import sys
from typing import Any

from tunecb.progress.printers import SearchPrinter
from tunecb.progress.printers import make_printer as _make_printer


def make_printer(log_format: str, quiet: bool, verbose: Any) -> SearchPrinter:
    """The progress printer of ``tunecb search``: its lines on stdout, the live view when
    stdout is a terminal."""
    return _make_printer(log_format, quiet, verbose, write=out, stream=sys.stdout)


def out(text: str) -> None:
    """Print to stdout, flushed."""
    print(text, flush=True)


def err(text: str) -> None:
    """Print to stderr, flushed."""
    print(text, file=sys.stderr, flush=True)
