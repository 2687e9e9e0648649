"""The study the notebooks run: pipeline (load sources, extract features, fit RMs once per run, their metric table),
synthetic (the eq. 4 drift benchmark) and scenarios (notebook 06's sweep), tables (result tables), length_tables
(length calibration and length-controlled accuracy), findings (sentences computed from them) and plots (figures that
display them).
"""
