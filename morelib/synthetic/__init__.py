"""Synthetic preference data with a known truth: synthetic (the paper's eq. 4 drift benchmark and a latent variant
whose drift lives in nonlinear features) and scenarios (notebook 06's sweep of named scenarios × seeds × schemes).
"""
