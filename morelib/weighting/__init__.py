"""Source weighting (paper §4, eqs. 2, 7–9), the math every trainer shares: losses (Bradley–Terry loss and its
reward-head gradient), solver (min-norm λ on the simplex), more (MORE's momentum → normalise → min-norm weighting) and
baselines (the simplex λ check, size-proportional, the tuned grid, FAMO).
"""
