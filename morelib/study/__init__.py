"""The study the notebooks run: pipeline (load sources, extract features, fit RMs once per run, their metric table),
capacity (notebook 07's capacity curve), tables (result tables), length_tables (length calibration and
length-controlled accuracy), findings (sentences computed from them), gpu_plan (the study's fine-tunes and their plan
before a GPU is rented) and plots (figures that display them).
"""
