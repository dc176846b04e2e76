"""The 5 Hz planner LM: a Qwen3 causal LM with 65,535 audio-code tokens added to its vocabulary.

Loaded with transformers (`Qwen3ForCausalLM`, safetensors only, no remote code) and its own fast
tokenizer; the chat template shipped in the folder renders the prompts, as upstream does.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM, StaticCache
from transformers.utils import logging as transformers_logging

from ...errors import CheckpointError
from ..weights import pretrained

AUDIO_CODE_TOKEN = "<|audio_code_{}|>"
NUM_CODE_TOKENS = 65_535
VALID_CODES = 64_000  # the FSQ codebook ([8, 8, 8, 5, 5, 5]); tokens for 64000..65534 are never valid
MAX_KEPT_CACHES = 2  # static KV caches kept for reuse (most recently used), each one shape
# Compiled decode-step shapes kept: capacities up to the context (about 16 steps of 256 tokens) times
# the batch sizes and guidance on or off that a worker sees.


# ACESTEP_LM_COMPILE -> torch.compile's mode for the decode step (None: eager). "graphs" adds CUDA-graph
# capture: one replay per token instead of hundreds of kernel launches, which is what a batch of one or
# two rows costs on a GPU (decoding is launch- and memory-bound there). The static caches have fixed
# addresses (transformers marks them), so the steps of a generation replay one graph per cache shape
# (re-recorded when a cache is dropped and rebuilt); on a CPU there is nothing to capture and it is
# the plain compile.
DECODE_COMPILE_MODES: dict[str, str | None] = {"off": None, "on": "default", "graphs": "reduce-overhead"}
# The one thread that replays graphed decode steps, for every planner the process loads. torch keeps
# CUDA-graph trees in thread-local state and jobs arrive on whichever worker thread is free (the
# handler's asyncio.to_thread pool), so each thread would record, and keep memory for, graphs of its
# own. It is one per process, not per planner: a planner loaded again (/v1/init switching LMs, the GPU
# bench's modes) would otherwise start a second one, which torch 2.11 refuses with an AssertionError
# (it sets that state up only in the thread that first imports its CUDA-graph module; 2.13 in every
# thread, where the old thread's graphs would linger until it is collected). Starts on the first step.
_GRAPH_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="planner-graphs")


@dataclass(frozen=True)
class TokenIds:
    """Ids the planner needs, looked up by their strings (never hard-coded)."""

    think_start: int
    think_end: int
    im_start: int
    im_end: int
    eos: int
    pad: int
    first_code: int  # id of <|audio_code_0|>; code n is first_code + n
    newline: int


class PlannerLM:
    def __init__(self, model: Qwen3ForCausalLM, tokenizer: PreTrainedTokenizerFast, ids: TokenIds, name: str,
                 compile_decode: str = "off"):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.ids = ids
        self.name = name
        self.compile_mode = DECODE_COMPILE_MODES[compile_decode]
        self._caches: dict[tuple[int, int], StaticCache] = {}
        self._compiled_step = None

    def cache(self, rows: int, capacity: int) -> StaticCache:
        """A reset static KV cache for `rows` sequences of up to `capacity` tokens.

        Caches are kept and reused (one per shape), so a compiled decode step sees the same cache
        object and tensor shapes from one generation to the next and never recompiles for them.
        """
        key = (rows, capacity)
        cache = self._caches.pop(key, None)
        if cache is None:
            cache = StaticCache(config=self.model.config, max_cache_len=capacity)
        else:
            cache.reset()
        self._caches[key] = cache  # most recently used last
        while len(self._caches) > MAX_KEPT_CACHES:  # a 1.7B cache for 16 x 3.5k tokens is 6 GB
            self._caches.pop(next(iter(self._caches)))
        return cache

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                cache: StaticCache) -> torch.Tensor:
        """Last-position logits [rows, V] in float32."""
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
                         use_cache=True, logits_to_keep=1)
        return out.logits[:, -1].float()

    def decode_step(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                    cache: StaticCache) -> torch.Tensor:
        """One token per row; compiled once per cache shape unless `compile_decode` is off."""
        if self.compile_mode is None:
            return self.forward(ids, mask, positions, cache)
        if self._compiled_step is None:
            # One graph per (rows, capacity): models/compile_policy.py raises dynamo's recompile limit for it.
            self._compiled_step = torch.compile(self.forward, mode=self.compile_mode, dynamic=False, fullgraph=False)
        if self.compile_mode == "reduce-overhead":
            return _GRAPH_THREAD.submit(self._replay, ids, mask, positions, cache).result()
        return self._compiled_step(ids, mask, positions, cache)

    def _replay(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                cache: StaticCache) -> torch.Tensor:
        # Each call is a new step: a captured graph's outputs are overwritten by its next replay, so
        # the logits are copied out (one row of the vocabulary per sequence).
        torch.compiler.cudagraph_mark_step_begin()
        with torch.no_grad():
            return self._compiled_step(ids, mask, positions, cache).clone()

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def vocab_size(self) -> int:
        return self.model.config.vocab_size

    @classmethod
    def load(cls, folder: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
             compile_decode: str = "off") -> "PlannerLM":
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise CheckpointError(folder, "planner LM folder lacks config.json")
        tokenizer = load_tokenizer(folder)
        ids = token_ids(tokenizer, folder)
        if not (folder / "model.safetensors").is_file() and not (folder / "model.safetensors.index.json").is_file():
            raise CheckpointError(folder, "planner LM weights (model.safetensors) are missing")
        transformers_logging.disable_progress_bar()
        try:
            config = Qwen3Config.from_pretrained(folder)
        except (OSError, ValueError) as exc:
            raise CheckpointError(folder, f"unreadable planner LM config: {exc}") from exc
        if config.vocab_size < len(tokenizer):
            raise CheckpointError(folder, f"the model's vocabulary ({config.vocab_size}) is smaller than the "
                                  f"tokenizer's ({len(tokenizer)}): they do not belong together")
        if ids.first_code + NUM_CODE_TOKENS > config.vocab_size:
            raise CheckpointError(folder, "the audio-code tokens lie outside the model's vocabulary")
        model = pretrained(folder, "planner LM", Qwen3ForCausalLM.from_pretrained, config=config, dtype=dtype,
                           use_safetensors=True)
        return cls(model.to(device), tokenizer, ids, folder.name, compile_decode)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        """The chat template of the checkpoint, applied exactly as upstream applies it."""
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def load_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise CheckpointError(folder, "planner LM folder lacks its tokenizer (tokenizer.json)")
    try:
        Tokenizer.from_file(str(path))  # fail early with a clear message on a damaged file
    except Exception as exc:  # the Rust side raises a generic Exception
        raise CheckpointError(path, f"tokenizer.json is unreadable: {exc}") from exc
    config = _read_json(folder / "tokenizer_config.json")
    template = config.get("chat_template")
    template_file = folder / "chat_template.jinja"
    if template_file.is_file():
        template = template_file.read_text()
    if not template:
        raise CheckpointError(folder, "planner LM folder has no chat template (chat_template.jinja)")
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(path), eos_token=config.get("eos_token", "<|im_end|>"),
                                        pad_token=config.get("pad_token", "<|endoftext|>"))
    tokenizer.chat_template = template
    return tokenizer


def token_ids(tokenizer: PreTrainedTokenizerFast, folder: Path) -> TokenIds:
    def require(token: str) -> int:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise CheckpointError(folder, f"the planner tokenizer lacks the token {token!r}")
        return token_id

    first = require(AUDIO_CODE_TOKEN.format(0))
    last = require(AUDIO_CODE_TOKEN.format(NUM_CODE_TOKENS - 1))
    if last - first != NUM_CODE_TOKENS - 1:
        raise CheckpointError(folder, "the planner tokenizer's audio-code tokens are not contiguous")
    newline = tokenizer.encode("\n", add_special_tokens=False)
    return TokenIds(think_start=require("<think>"), think_end=require("</think>"), im_start=require("<|im_start|>"),
                    im_end=require("<|im_end|>"), eos=tokenizer.eos_token_id, pad=tokenizer.pad_token_id,
                    first_code=first, newline=newline[0])


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text())
    except ValueError as exc:
        raise CheckpointError(path, f"not valid JSON: {exc}") from exc
    return value if isinstance(value, dict) else {}
