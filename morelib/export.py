"""Entry point `python -m morelib.export`: runs `morelib.cli.export.main` (the code lives there)."""

import sys

from morelib.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
