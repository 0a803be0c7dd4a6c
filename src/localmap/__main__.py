"""``python -m localmap`` runs the CLI."""

import sys

from localmap.cli import main

sys.exit(main())
