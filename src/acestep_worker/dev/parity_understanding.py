"""The audio-understanding goldens (`manifest_understanding.json`): upstream's prompt, planner loop and
audio codes, checked against ours.

* `understand_planner`: for a few code lists, upstream's understanding prompt (the manifest holds the
  strings, compared byte for byte) and its token ids; then upstream's PyTorch decode loop on that prompt,
  greedy and without the metadata constraint, for 24 steps: the tokens, and the top 16 logits of every
  step (values within the single-forward tolerance, ids exact); and, for one input, upstream's whole
  constrained loop (greedy, `generation_phase="understand"`): `<think>`, bpm, the caption to its
  512-token cap, then the hand-over, where this random LM writes newlines to the 4032-token limit.
* `understand_handover`: upstream's constrained loop with the LM steered by a script (at step k the
  script's k-th token gets +100 on both sides), so that the model names fields itself after a caption:
  an indented caption line, a named field that skips others, and (metadata pass) an unknown name.
* `understand_codes`: a source through the VAE (upstream's posterior sample, seeded) and the audio
  tokenizer to the `<|audio_code_N|>` string.
* `understand_codes_long`: the same for a 70 s source, which upstream's `tiled_encode` encodes in three
  30 s windows, each with its own posterior sample; compared bit for bit. Its source is stored as one
  period (`in.audio_pcm16_period`) repeated to `in.samples` samples, to keep the file small.

Both run on the tiny tree's planner LM and VAE, rebuilt here by `dev/tiny.py` (deterministic); the
manifest records their checksums, and a tiny tree that no longer matches them fails the run rather
than comparing against a different model.
"""

from __future__ import annotations

import hashlib
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import torch

from ..models.dit.conditioning import tokenize
from ..models.dit.model import DiTModel
from ..models.planner.chat_prompts import understand_prompt
from ..models.planner.decoding import PairedDecoder, SamplingParams
from ..models.planner.lm import PlannerLM
from ..models.planner.metadata import Metadata
from ..models.planner.planner import Planner, SongText
from ..models.vae import encode, load_vae
from ..schema.values import format_audio_codes
from . import tiny

SINGLE_FORWARD = {"atol": 1e-5, "rtol": 1e-4}
BITWISE = {"atol": 0.0, "rtol": 0.0}
GREEDY = SamplingParams(temperature=0.0, top_k=0, top_p=1.0, cfg_scale=1.0)
TOP = 16
STEER = 100.0  # what a script adds to its token's logit: upstream's harness adds the same


@lru_cache(maxsize=1)
def _tiny_models() -> tuple[Path, dict[str, str]]:
    """The tiny planner LM and VAE in a scratch folder, and their checksums by the manifest's names."""
    root = Path(tempfile.mkdtemp(prefix="understand-parity-"))
    tiny.build_planner_lm(root / "planner")
    tiny.build_vae(root / "vae")
    names = ("planner/model.safetensors", "planner/tokenizer.json", "planner/chat_template.jinja",
             "vae/diffusion_pytorch_model.safetensors")
    return root, {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in names}


def stale_models(manifest: dict) -> list[str]:
    """The tiny-tree files whose checksum differs from the one the goldens were made with."""
    _, sums = _tiny_models()
    recorded = manifest.get("tiny_tree", {}).get("sha256", {})
    return sorted(name for name in set(sums) | set(recorded) if sums.get(name) != recorded.get(name))


@lru_cache(maxsize=1)
def _planner() -> PlannerLM:
    return PlannerLM.load(_tiny_models()[0] / "planner")


def _text(tensor: torch.Tensor) -> str:
    return bytes(tensor.tolist()).decode()


def _bytes(text: str) -> torch.Tensor:
    return torch.tensor(list(text.encode()), dtype=torch.uint8)


def run_planner(tensors: dict, entry: dict) -> dict:
    """Ours for every recorded input: prompt ids, the prompt itself (as bytes, against the manifest's
    string), the greedy tokens and each step's top logits."""
    lm, out = _planner(), {}
    for name, recorded in entry["prompts"].items():
        codes = tensors[f"in.{name}.codes"].tolist()
        code_string = format_audio_codes(codes)
        prompt = understand_prompt(lm, code_string)
        out[f"prompt.{name}.code_string"] = (_bytes(code_string), _bytes(recorded["code_string"]))
        out[f"prompt.{name}.text"] = (_bytes(prompt), _bytes(recorded["prompt"]))
        ids = lm.encode(prompt)
        out[f"out.{name}.prompt_ids"] = torch.tensor(ids)
        steps = tensors[f"out.{name}.greedy_tokens"].shape[0]
        decoder = PairedDecoder(lm, [ids], None, steps)
        tokens, logits = [], []
        for step in range(steps):
            row = decoder.guided_logits(1.0)[0]
            logits.append(row)
            tokens.append(int(row.argmax()))
            if step + 1 < steps:
                decoder.step(torch.tensor(tokens[-1:]))
        top = torch.stack(logits).topk(TOP, dim=-1)
        out[f"out.{name}.greedy_tokens"] = torch.tensor(tokens)
        out[f"out.{name}.step_top16_logits"] = top.values
        out[f"out.{name}.step_top16_ids"] = top.indices
        if f"out.{name}.constrained_greedy_tokens" in tensors:
            out[f"out.{name}.constrained_greedy_tokens"] = torch.tensor(Planner(lm).understand(code_string, 0, GREEDY).ids)
    return out


@contextmanager
def _steered(script: list[int]):
    """Every decoder's logits at generated step k get +STEER on script[k] (a dev-only patch: the planner
    builds its decoders inside, and the golden's loop was steered the same way upstream)."""
    plain = PairedDecoder.guided_logits

    def steered(self, cfg_scale: float) -> torch.Tensor:
        logits = plain(self, cfg_scale)
        if self.generated < len(script):
            logits = logits.clone()
            logits[:, script[self.generated]] += STEER
        return logits

    PairedDecoder.guided_logits = steered
    try:
        yield
    finally:
        PairedDecoder.guided_logits = plain


def run_handover(tensors: dict, entry: dict) -> dict:
    """Ours for every scripted case: the understanding pass on the case's codes, or the metadata pass on its
    caption and lyrics (which stops after the last field, where upstream writes its end-of-turn)."""
    lm, out = _planner(), {}
    for name, case in entry["cases"].items():
        with _steered(tensors[f"in.{name}.script"].tolist()):
            if case["phase"] == "understand":
                result = Planner(lm).understand(format_audio_codes(case["codes"]), 0, GREEDY)
            else:
                result = Planner(lm).write_metadata(SongText(case["caption"], case["lyrics"]), Metadata(), GREEDY, 0)
        out[f"out.{name}.constrained_greedy_tokens"] = torch.tensor(result.ids)
    return out


def source_pcm16(tensors: dict) -> torch.Tensor:
    """A codes golden's int16 source [2, samples]: stored whole, or one period repeated to `in.samples`."""
    if "in.audio_pcm16" in tensors:
        return tensors["in.audio_pcm16"]
    period, samples = tensors["in.audio_pcm16_period"], int(tensors["in.samples"])
    return period.repeat(1, -(-samples // period.shape[1]))[:, :samples]


def run_codes(dit: DiTModel, tensors: dict) -> dict:
    """The source through our VAE encode (the job's seeded posterior sample, unpadded) and tokenizer."""
    vae = load_vae(_tiny_models()[0] / "vae", "cpu", torch.float32)
    audio = source_pcm16(tensors).float() / 32768
    generator = torch.Generator("cpu").manual_seed(int(tensors["in.posterior_seed"]))
    latents = encode(vae, audio.unsqueeze(0), generator, pad_to_frames=False)
    _, indices = tokenize(dit, latents)
    return {"mid.latents": latents, "out.indices": indices,
            "out.code_string": _bytes(format_audio_codes(indices.flatten().tolist()))}


def run(stem: str, dit: DiTModel, tensors: dict, entry: dict) -> tuple[dict, dict] | None:
    """Our outputs for one understanding golden and the tolerance; None: no runner for `stem`."""
    if stem == "understand_planner":
        return run_planner(tensors, entry), SINGLE_FORWARD
    if stem == "understand_handover":
        return run_handover(tensors, entry), SINGLE_FORWARD
    if stem == "understand_codes":
        return run_codes(dit, tensors), SINGLE_FORWARD
    if stem == "understand_codes_long":
        return run_codes(dit, tensors), BITWISE
    return None
