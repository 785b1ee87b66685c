"""`python -m sutro_core.local` is the `sutro-local` command."""

import sys

from .cli import main

sys.exit(main())
