"""Entry point `python -m morelib.finetune`: runs `morelib.train.finetune.main` (the code lives there); with `--plan`,
prints the study's fine-tuning plan instead (`morelib.study.gpu_plan.main`: updates, checkpoints, GPU-hours)."""

import sys

from morelib.study import gpu_plan
from morelib.train.finetune import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--plan" in args:
        gpu_plan.main([a for a in args if a != "--plan"])
        sys.exit(0)
    sys.exit(main())
