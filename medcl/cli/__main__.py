"""``python -m medcl.cli``: the ``medcl`` command (also what ``torchrun -m medcl.cli`` runs)."""

import sys

from medcl.cli import main

sys.exit(main())
