"""Training reward models (paper §4, eqs. 2, 7–9): losses (Bradley–Terry loss and its head gradient), solver (min-norm λ
on the simplex), more (MORE's momentum → normalise → min-norm weighting), baselines (simplex λ check,
size-proportional, tuned grid, FAMO), reward_head (the feature tier: a head on cached features), mlp_head (the mlp
tier: a shared trunk + head on cached features), finetune (the full fine-tuning tier on transformers' Trainer) and
reward_models (an RM's key and the one scoring protocol).
"""
