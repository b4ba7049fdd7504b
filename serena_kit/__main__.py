"""`python -m serena_kit`: the `serena` command."""

import sys

from serena_kit.cli import main

sys.exit(main())
