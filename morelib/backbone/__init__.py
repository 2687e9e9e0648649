"""The reward model's backbone: model (loading, tokenising, last-token and mean pooling, saving), prompt_sharing (a
pair's common prompt read once, in both tiers), features (the frozen backbone's pooled features, cached on disk:
the feature tier's input) and hidden_states (the hidden states entering block L−k, cached on disk: the blocks tier's
input).
"""
