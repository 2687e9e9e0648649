"""Measuring reward models (paper §5): metrics (accuracy, ECE/ACE/MCE, Brier, outliers), stats (bootstrap and seed CIs,
Holm, power), temperature (temperature scaling on the calibration split), diagnostics (length bias, training guards)
and length (post-hoc length calibration, length-controlled accuracy).
"""
