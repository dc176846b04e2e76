"""Upstream's PMI quality score: how much a song's 5 Hz audio codes help the planner LM predict the song's
conditions (upstream acestep/core/scoring/lm_score.py, `calculate_pmi_score_per_condition`).

The planner reads the codes through its understanding prompt (codes -> metadata and lyrics) and is
teacher-forced on each condition written as it would write it; the same targets are read again with the
user turn replaced by "NO USER INPUT" (the unconditional prompt). Per condition:
- caption and lyrics: PMI = mean log p(target | codes) - mean log p(target | no codes), squashed to 0..1
  by sigmoid(PMI / score_scale) (0.5: the codes do not help; above: they do);
- bpm, duration, genres, keyscale, language, timesignature (those known): top-10 recall, the mean over
  the target's tokens of 1 - (rank - 1) / 10 where the true token is among the 10 likeliest, else 0.
The overall score weighs caption 0.5, lyrics 0.3 and the mean of the metadata recalls 0.2, over the
components present (weights renormalised). Every value lies in 0..1, higher is better.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import yaml

from ...schema.values import format_audio_codes
from .chat_prompts import NO_USER_INPUT, understand_prompt
from .lm import PlannerLM

RECALL_FIELDS = ("bpm", "duration", "genres", "keyscale", "language", "timesignature")
TOP_K = 10
WEIGHTS = {"caption": 0.5, "lyrics": 0.3, "metadata": 0.2}


def field_target(name: str, value) -> str:
    """One condition as the planner writes it in its chain of thought: `<think>\\n{yaml}\\n</think>\\n`."""
    text = yaml.safe_dump({name: value}, allow_unicode=True, sort_keys=True).strip()
    return f"<think>\n{text}\n</think>\n"


def lyrics_target(lyrics: str) -> str:
    return f"<think>\n</think>\n# Lyric\n{lyrics}\n"


def target_logits(lm: PlannerLM, prompt: str, target: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits [T, V] (float32, CPU) that predict the target's T tokens after the prompt, and the tokens.
    The prompt and the prompt + target are tokenized apart, as upstream does, so a token merging across
    the seam counts as the target's."""
    prompt_len = len(lm.tokenizer(prompt, add_special_tokens=True)["input_ids"])
    ids = lm.tokenizer(prompt + target, add_special_tokens=True)["input_ids"]
    if len(ids) <= prompt_len:
        return torch.empty(0, lm.vocab_size), torch.empty(0, dtype=torch.long)
    tokens = torch.tensor([ids], dtype=torch.long, device=lm.device)
    kept = len(ids) - prompt_len + 1  # only the rows that predict the target: [T, V] rather than the prompt's too
    with torch.no_grad():
        logits = lm.model(input_ids=tokens, attention_mask=torch.ones_like(tokens), logits_to_keep=kept).logits
    return logits[0, :-1].float().cpu(), tokens[0, prompt_len:].cpu()


def mean_log_prob(logits: torch.Tensor, targets: torch.Tensor) -> float:
    if targets.numel() == 0:
        return -math.inf
    return torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None]).mean().item()


def top_k_recall(logits: torch.Tensor, targets: torch.Tensor, k: int = TOP_K) -> float:
    """Mean over the target's tokens of 1 - (rank - 1) / k where the true token ranks within the top k."""
    if targets.numel() == 0:
        return 0.0
    top = torch.topk(logits, k=min(k, logits.shape[-1]), dim=-1).indices
    hit = top == targets[:, None]
    weight = 1.0 - torch.arange(top.shape[-1], dtype=torch.float64) / k
    return (hit.double() * weight).sum().item() / targets.numel()


def pmi_to_score(pmi: float, scale: float) -> float:
    """sigmoid(pmi / scale), written so that no exponent overflows."""
    x = pmi / scale
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    return math.exp(x) / (1.0 + math.exp(x))


def overall_score(scores: Mapping[str, float]) -> float:
    """Caption 0.5, lyrics 0.3, the metadata recalls' mean 0.2, over the components present."""
    meta = [v for k, v in scores.items() if k not in ("caption", "lyrics")]
    parts = {k: scores[k] for k in ("caption", "lyrics") if k in scores}
    if meta:
        parts["metadata"] = sum(meta) / len(meta)
    total = sum(WEIGHTS[k] for k in parts)
    return sum(v * WEIGHTS[k] for k, v in parts.items()) / total if total else 0.0


def quality_scores(lm: PlannerLM, codes: Sequence[int], lyrics: str, metadata: Mapping[str, object],
                   scale: float) -> tuple[dict[str, float], float]:
    """Per-condition scores and the overall one for one song's codes. `metadata`: the song's caption and
    the fields of RECALL_FIELDS known for it (None or missing: not scored)."""
    prompt = understand_prompt(lm, format_audio_codes(codes))
    unconditional = understand_prompt(lm, NO_USER_INPUT)
    scores: dict[str, float] = {}
    for name in RECALL_FIELDS:
        if metadata.get(name) is not None:
            scores[name] = top_k_recall(*target_logits(lm, prompt, field_target(name, metadata[name])))
    pmi_targets = {}
    if metadata.get("caption") is not None:
        pmi_targets["caption"] = field_target("caption", metadata["caption"])
    if lyrics:
        pmi_targets["lyrics"] = lyrics_target(lyrics)
    for name, target in pmi_targets.items():
        pmi = (mean_log_prob(*target_logits(lm, prompt, target))
               - mean_log_prob(*target_logits(lm, unconditional, target)))
        scores[name] = pmi_to_score(pmi, scale)
    return scores, overall_score(scores)
