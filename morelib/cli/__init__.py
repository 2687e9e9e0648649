"""Command-line entry points: export (a run's RM as a Hugging Face folder), evaluate (any HF reward model on a
profile's test pairs) and run_notebook (one notebook of a run through papermill, for run_all.sh). `python -m
morelib.export` and `python -m morelib.evaluate` run the first two.
"""
