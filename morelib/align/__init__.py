"""Rejection-sampling alignment (paper §5.4, notebook 05): rjs (sample, pick best-of-n, SFT, perplexity), judge
(position-swapped pairwise judges) and alignment (the notebook's study).
"""
