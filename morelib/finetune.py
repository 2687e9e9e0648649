"""Entry point `python -m morelib.finetune`: runs `morelib.train.finetune.main` (the code lives there)."""

import sys

from morelib.train.finetune import main

if __name__ == "__main__":
    sys.exit(main())
