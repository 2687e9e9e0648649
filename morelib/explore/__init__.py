"""The interactive explorers of notebooks 02 and 04: engine (refit the head at a chosen λ or data mix) and widgets
(sliders and the live plotly figure).
"""
