"""``python -m harness``: the same command line as the ``harness`` executable (used under ``torchrun -m``)."""

import sys

from .cli import main

sys.exit(main())
