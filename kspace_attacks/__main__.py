"""``python -m kspace_attacks`` is the ``kspace-attacks`` command (also for ``torchrun -m``)."""

import sys

from .cli import main

sys.exit(main())
