"""``python -m kspace_attacks.cli`` is the ``kspace-attacks`` command too."""

import sys

from . import main

sys.exit(main())
