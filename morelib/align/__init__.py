"""Rejection-sampling alignment (paper §5.4, notebook 05): rjs (sample, pick best-of-n, SFT, perplexity), judge
(position-swapped pairwise judges), rm_judge (a reward-model judge on another backbone, trained on pairs no selecting
RM saw) and alignment (the notebook's study).
"""
