"""The models and their files: the DiT, the planner LM, LoRA adapters, the VAE, the text encoder, weights and variants."""
