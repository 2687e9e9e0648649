"""Training reward models, one module per compute tier: reward_head (a linear head on cached features), mlp_head (a
shared trunk + head on cached features), blocks (the top k transformer blocks, final norm and score layer on cached
hidden states), finetune (full fine-tuning on transformers' Trainer; updates splits its batch per update over
processes) and reward_models (an RM's key and the one scoring protocol every tier meets).
"""
