"""Qwen3-Embedding text encoder: captions through the whole model, lyrics through its embeddings only.

Tokenization uses the folder's own `tokenizer.json` (the fast tokenizer), whose post-processor
appends `<|endoftext|>`; truncation keeps room for it, as upstream's tokenizer call does. Each prompt
is tokenized alone and batches are right-padded with the pad id, so a prompt's tokens never depend
on its neighbours (the encoder runs causally without a mask, and right padding cannot reach back).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import Qwen3Config, Qwen3Model
from transformers.utils import logging as transformers_logging

from ..errors import CheckpointError
from .weights import pretrained

DEFAULT_PAD_TOKEN = "<|endoftext|>"


@dataclass
class EncodedText:
    hidden_states: torch.Tensor  # [B, L, text_hidden]
    attention_mask: torch.Tensor  # [B, L] int64, 1 for real tokens


class TextEncoder:
    """The caption/lyric encoder of the DiT, loaded from a `Qwen3-Embedding-*` folder."""

    def __init__(self, model: Qwen3Model, tokenizer: Tokenizer, pad_id: int):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.pad_id = pad_id
        self._by_max_length: dict[int, Tokenizer] = {}

    @classmethod
    def load(cls, folder: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
             tokenizer_folder: str | Path | None = None) -> "TextEncoder":
        """Load the model from `folder` and its tokenizer from the same folder unless given apart."""
        folder = Path(folder)
        tokenizer, pad_id = load_tokenizer(Path(tokenizer_folder) if tokenizer_folder else folder)
        if not (folder / "model.safetensors").is_file() and not (folder / "model.safetensors.index.json").is_file():
            raise CheckpointError(folder, "text encoder weights (model.safetensors) are missing")
        transformers_logging.disable_progress_bar()
        try:
            config = Qwen3Config.from_pretrained(folder)
        except (OSError, ValueError) as exc:
            raise CheckpointError(folder, f"cannot load the text encoder: {exc}") from exc
        model = pretrained(folder, "text encoder", Qwen3Model.from_pretrained, config=config, dtype=dtype,
                           use_safetensors=True)
        return cls(model.to(device), tokenizer, pad_id)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def tokenize(self, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids [B, L] right-padded with the pad id, and the mask."""
        tokenizer = self._truncating(max_length)
        ids = [tokenizer.encode(text).ids for text in texts]
        longest = max(len(t) for t in ids)
        input_ids = torch.full((len(ids), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), longest), dtype=torch.long)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[row, : len(tokens)] = 1
        return input_ids, mask

    def _truncating(self, max_length: int) -> Tokenizer:
        # The fast tokenizer truncates the content and keeps the appended end token, as upstream's
        # `truncation=True` call does. Truncation is tokenizer state, so keep one copy per length.
        if max_length not in self._by_max_length:
            tokenizer = Tokenizer.from_str(self.tokenizer.to_str())
            tokenizer.enable_truncation(max_length)
            self._by_max_length[max_length] = tokenizer
        return self._by_max_length[max_length]

    @torch.no_grad()
    def encode_captions(self, prompts: list[str], max_length: int) -> EncodedText:
        """Last hidden state of the full encoder, run without an attention mask (causal only)."""
        ids, mask = self.tokenize(prompts, max_length)
        hidden = self.model(input_ids=ids.to(self.device)).last_hidden_state
        return EncodedText(hidden, mask.to(self.device))

    @torch.no_grad()
    def embed_lyrics(self, prompts: list[str], max_length: int) -> EncodedText:
        """Token embeddings only; the DiT's own lyric encoder contextualises them."""
        ids, mask = self.tokenize(prompts, max_length)
        hidden = self.model.get_input_embeddings()(ids.to(self.device))
        return EncodedText(hidden, mask.to(self.device))


def load_tokenizer(folder: Path) -> tuple[Tokenizer, int]:
    """The folder's fast tokenizer and its pad id (from tokenizer_config.json, else <|endoftext|>)."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise CheckpointError(folder, "tokenizer.json is missing")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises a generic Exception on malformed files
        raise CheckpointError(path, f"tokenizer.json is unreadable: {exc}") from exc
    pad_token = DEFAULT_PAD_TOKEN
    config_path = folder / "tokenizer_config.json"
    if config_path.is_file():
        try:
            value = json.loads(config_path.read_text()).get("pad_token")
        except ValueError as exc:
            raise CheckpointError(config_path, f"tokenizer_config.json is not valid JSON: {exc}") from exc
        if isinstance(value, dict):
            value = value.get("content")
        pad_token = value or pad_token
    pad_id = tokenizer.token_to_id(pad_token)
    if pad_id is None:
        raise CheckpointError(path, f"pad token {pad_token!r} is not in the vocabulary")
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer, pad_id
