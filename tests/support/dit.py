"""Inputs for one DiT forward pass: random conditions and noise shaped for a loaded DiT."""

import torch

from acestep_worker.models.dit.conditioning import Conditions


def dit_inputs(dit, batch=1, frames=40, tokens=23, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = dit.transformer.config.encoder_hidden_size or dit.transformer.config.hidden_size
    conditions = Conditions(torch.randn(batch, tokens, hidden, generator=g), torch.ones(batch, tokens, dtype=torch.bool),
                            torch.randn(batch, frames, 2 * dit.silence_latent.shape[-1], generator=g))
    noise = torch.randn(batch, frames, dit.silence_latent.shape[-1], generator=g)
    return conditions, noise
