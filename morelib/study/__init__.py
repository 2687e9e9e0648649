"""The study the notebooks run: pipeline (load sources, extract features, fit RMs once per run, their metric table),
synthetic (the eq. 4 and latent drift benchmarks) and scenarios (notebook 06's sweep), capacity (notebook 07's
capacity curve), tables (result tables), length_tables (length calibration and length-controlled accuracy), findings
(sentences computed from them) and plots (figures that display them).
"""
