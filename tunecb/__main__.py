"""``python -m tunecb``: the same as the ``tunecb`` command."""

import sys

from tunecb.cli import main

sys.exit(main())
