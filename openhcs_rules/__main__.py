"""``python -m openhcs_rules`` runs the console script (what the workflow's rules call)."""

import sys

from openhcs_rules.cli import main

sys.exit(main())
