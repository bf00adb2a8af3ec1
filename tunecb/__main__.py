"""``python -m tunecb``: the same as the ``tunecb`` command."""

import sys

from tunecb.cli import main

if __name__ == "__main__":  # not when a worker process (spawn) imports this module
    sys.exit(main())
