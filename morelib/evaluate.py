"""Entry point `python -m morelib.evaluate`: runs `morelib.cli.evaluate.main` (the code lives there)."""

import sys

from morelib.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
