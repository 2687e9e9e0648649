"""The interactive explorers of notebooks 02 and 04: engine (refit the head at a chosen λ or data mix), intervals
(bootstrap CIs over test pairs, the ECE floor, the change against uniform λ), reference (the study's own results:
ghost markers, tuned/FAMO presets), figures (the panels, drawn in place) and widgets (sliders, presets, readouts).
"""
