"""The planner's decode loop: conditional and unconditional prompts in one batch, one static KV cache.

Shape of the loop (after gpt-fast): `prefill` runs every prompt once; `step` feeds one token per
row. Rows 0..B-1 are the conditional sequences, rows B..2B-1 their unconditional twins for
classifier-free guidance; a twin always receives the token sampled for its conditional row. Prompts
of different lengths are left-padded and every row gets its own positions, so padding never shifts
RoPE (upstream's PyTorch path did shift it; its nano-vLLM path, like this one, did not).

Sampling (`sample_tokens`) never synchronises with the GPU: it draws with the exponential-race
trick (argmax of p / Exp(1)), one generator per item, so seeded items reproduce alone or in a batch.

Order of one sampling step, as upstream's PyTorch loop: guidance (uncond + scale * (cond - uncond)),
the constraint mask, the repetition penalty, top-k, top-p, temperature.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .lm import PlannerLM

CAPACITY_STEP = 256


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.85
    top_k: int = 0  # 0 or less: off
    top_p: float = 0.9  # 1 or more: off
    cfg_scale: float = 2.0  # 1 or less: no guidance, no unconditional rows
    repetition_penalty: float = 1.0  # 1: off (the op is skipped, not run as a no-op)
    constrained: bool = True  # False: no metadata machine and no code-only mask; the LM writes freely

    @property
    def uses_cfg(self) -> bool:
        return self.cfg_scale > 1.0


class PairedDecoder:
    """B sequences (plus B unconditional twins when guiding) decoded over one static cache."""

    def __init__(self, lm: PlannerLM, cond: list[list[int]], uncond: list[list[int]] | None, max_new_tokens: int):
        self.lm = lm
        self.batch = len(cond)
        prompts = cond + (uncond or [])
        longest = max(len(p) for p in prompts)
        # Round the cache up so that a compiled step sees a handful of shapes, not one per request.
        self.capacity = -(-(longest + max_new_tokens) // CAPACITY_STEP) * CAPACITY_STEP
        device = lm.device
        rows = len(prompts)
        ids = torch.full((rows, longest), lm.ids.pad, dtype=torch.long)
        self.mask = torch.ones((rows, self.capacity), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, longest - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
            self.mask[row, : longest - len(prompt)] = 0
        self.mask = self.mask.to(device)
        self.cond_ids = ids[: self.batch].to(device)  # the conditional rows as fed, left padding included
        positions = (self.mask[:, :longest].cumsum(-1) - 1).clamp_min(0)
        self.next_position = positions[:, -1:] + 1
        self.cache = lm.cache(rows, self.capacity)
        self.generated = 0
        self.max_new_tokens = max_new_tokens
        with torch.no_grad():
            self._logits = lm.forward(ids.to(device), self.mask, positions, self.cache)

    def guided_logits(self, cfg_scale: float) -> torch.Tensor:
        """[B, V] float32: uncond + scale * (cond - uncond), or the conditional logits alone."""
        cond = self._logits[: self.batch]
        if self._logits.shape[0] == self.batch:
            return cond
        uncond = self._logits[self.batch:]
        return uncond + cfg_scale * (cond - uncond)

    def step(self, tokens: torch.Tensor) -> None:
        """Append one token [B] to every sequence (and to its twin) and compute the next logits."""
        if self.generated >= self.max_new_tokens:
            raise RuntimeError("decoder capacity exhausted")
        rows = self._logits.shape[0]
        ids = tokens.to(self.lm.device).repeat(rows // self.batch).unsqueeze(1)
        with torch.no_grad():
            self._logits = self.lm.decode_step(ids, self.mask, self.next_position, self.cache)
        self.next_position = self.next_position + 1
        self.generated += 1


class RepetitionPenalty:
    """transformers' `RepetitionPenaltyLogitsProcessor`, as upstream applies it to the guided logits: every
    token of the conditional row so far (its prompt, left padding included, and what it wrote) has a
    positive logit divided by the penalty and a negative one multiplied by it.

    What was seen is a bool [B, V] kept on the device and updated by scatter, so the per-token step
    never waits on the host.
    """

    def __init__(self, decoder: PairedDecoder, penalty: float):
        self.penalty = float(penalty)
        self.seen = torch.zeros((decoder.batch, decoder.lm.vocab_size), dtype=torch.bool, device=decoder.lm.device)
        self.seen.scatter_(1, decoder.cond_ids, True)

    @classmethod
    def for_decoder(cls, decoder: PairedDecoder, penalty: float) -> RepetitionPenalty | None:
        return None if penalty == 1.0 else cls(decoder, penalty)

    def record(self, tokens: torch.Tensor) -> None:
        """Mark the token [B] each row just wrote."""
        self.seen.scatter_(1, tokens.to(self.seen.device).view(-1, 1), True)

    def apply(self, logits: torch.Tensor, first_column: int = 0) -> torch.Tensor:
        """`logits` [B, W] covering vocabulary columns first_column .. first_column + W."""
        seen = self.seen[:, first_column:first_column + logits.shape[-1]]
        return penalize_repeats(logits, seen, self.penalty)


def penalize_repeats(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Where `seen`: logits < 0 times the penalty, the others divided by it (-inf stays -inf)."""
    return torch.where(seen, torch.where(logits < 0, logits * penalty, logits / penalty), logits)


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Top-k, then top-p (nucleus: keep the smallest set of top tokens whose mass reaches p, always
    including the token that crosses it), as -inf on everything else. float32 throughout."""
    if top_k and top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cumulative - sorted_logits.softmax(-1) >= top_p  # mass before this token already >= p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_tokens(logits: torch.Tensor, params: SamplingParams, generators: list[torch.Generator]) -> torch.Tensor:
    """Sample one token per row of already-constrained logits [B, V]; no host synchronisation."""
    if params.temperature > 0 and hf_generate_order(params):
        # transformers' generate(): temperature first, then top-k and top-p over the scaled logits.
        probs = torch.softmax(filter_logits(logits / params.temperature, params.top_k, params.top_p), dim=-1)
    else:
        logits = filter_logits(logits, params.top_k, params.top_p)
        if params.temperature <= 0:
            return logits.argmax(-1)
        probs = torch.softmax(logits / params.temperature, dim=-1)
    race = torch.stack([torch.empty_like(probs[i]).exponential_(1.0, generator=g)
                        for i, g in enumerate(generators)])
    return (probs / race).argmax(-1)


def hf_generate_order(params: SamplingParams) -> bool:
    """Upstream runs an unconstrained, unguided pass through transformers' `generate()` (its own loop
    otherwise), whose warpers scale by the temperature before top-p: a different nucleus."""
    return not params.constrained and not params.uses_cfg


def generators_for(seeds: list[int], device: torch.device) -> list[torch.Generator]:
    return [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]
