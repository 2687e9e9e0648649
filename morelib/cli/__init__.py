"""Command-line entry points: export (a run's RM as a Hugging Face folder) and evaluate (any HF reward model on a
profile's test pairs). `python -m morelib.export` and `python -m morelib.evaluate` run them.
"""
