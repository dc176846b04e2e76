"""Constrained decoding of the `<think>` block: a finite-state machine over token ids.

The machine walks a fixed plan: `<think>`, a newline, then for each field its name (forced), its
value, and finally `</think>` (or nothing, when the caller stops after the metadata). Values follow
upstream's rules:

* bpm, duration, timesignature, keyscale, language: prefix trees built from the tokenization of
  `"<name>: <value>"`, so only complete valid values can be followed by the newline that ends them;
* language: the first token is the best-scoring first token of any valid code (greedy);
* caption: free text without backticks, special or audio-code tokens, at most 512 tokens; after a
  newline, the best-scoring next token decides: indented means the caption continues (only indented
  tokens are then allowed), anything else ends it and the next field name is forced;
* genres (audio understanding only): free text on one line, without backticks, special or audio-code
  tokens, at most 64 tokens; the newline ends it;
* a value the user gave is injected as the tokens of `" <value>\\n"`.

Unlike upstream, the machine never hands control back to the unconstrained model (upstream lets it
write the field name after a caption freely), so malformed metadata cannot be produced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch

from ...schema.values import LANGUAGES, TIME_SIGNATURES
from .lm import NUM_CODE_TOKENS, PlannerLM, TokenIds
from .metadata import BPM_RANGE, DURATION_RANGE, KEYSCALES, MAX_CAPTION_TOKENS, MAX_GENRES_TOKENS, UNDERSTAND_FIELDS, Metadata

NEG_INF = float("-inf")


@dataclass
class ValueTrie:
    """Token-id prefix tree of every valid value of one field (value tokens include the leading space)."""

    children: dict[tuple[int, ...], set[int]] = field(default_factory=dict)
    complete: set[tuple[int, ...]] = field(default_factory=set)

    def add(self, ids: tuple[int, ...]) -> None:
        for i in range(len(ids)):
            self.children.setdefault(ids[:i], set()).add(ids[i])
        self.complete.add(ids)


class Vocabulary:
    """Per-LM precomputed token facts, built once and shared by every generation."""

    def __init__(self, lm: PlannerLM):
        self.lm = lm
        newline = lm.encode("\n")
        if len(newline) != 1:
            raise ValueError("the planner tokenizer must encode a newline as one token")
        self.newline = newline[0]
        self.names = {name: lm.encode(f"{name}:") for name in UNDERSTAND_FIELDS}
        self._text: dict[int, str] = {}

    def text(self, token_id: int) -> str:
        if token_id not in self._text:
            self._text[token_id] = self.lm.decode([token_id])
        return self._text[token_id]

    def _trie(self, name: str, values) -> ValueTrie:
        trie, prefix = ValueTrie(), self.names[name]
        for value in values:
            ids = self.lm.encode(f"{name}: {value}")
            if ids[: len(prefix)] == prefix and len(ids) > len(prefix):
                trie.add(tuple(ids[len(prefix):]))
        return trie

    @cached_property
    def tries(self) -> dict[str, ValueTrie]:
        return {
            "bpm": self._trie("bpm", range(BPM_RANGE[0], BPM_RANGE[1] + 1)),
            "duration": self._trie("duration", range(DURATION_RANGE[0], DURATION_RANGE[1] + 1)),
            "timesignature": self._trie("timesignature", TIME_SIGNATURES),
            "keyscale": self._trie("keyscale", KEYSCALES),
            "language": self._trie("language", LANGUAGES),
        }

    @cached_property
    def token_texts(self) -> list[str]:
        """Every token's text, decoded once (the whole vocabulary: slow, so shared by the masks below)."""
        return self.lm.tokenizer.batch_decode([[i] for i in range(len(self.lm.tokenizer))])

    @cached_property
    def special_ids(self) -> list[int]:
        tokenizer = self.lm.tokenizer
        return sorted(set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values()))

    @cached_property
    def caption_blocked(self) -> torch.Tensor:
        """Bool [V]: tokens a caption may not contain (specials, audio codes, backticks)."""
        blocked = torch.zeros(self.lm.vocab_size, dtype=torch.bool)
        blocked[self.special_ids] = True
        blocked[self.lm.ids.first_code:self.lm.ids.first_code + NUM_CODE_TOKENS] = True
        for token, token_id in self.lm.tokenizer.get_vocab().items():
            if "`" in token:
                blocked[token_id] = True
        blocked[len(self.lm.tokenizer):] = True  # padding rows of the embedding have no token
        return blocked.to(self.lm.device)

    @cached_property
    def free_text_blocked(self) -> torch.Tensor:
        """Bool [V]: after `</think>` (lyrics), everything but the end-of-turn token is open text."""
        blocked = self.caption_blocked.clone()
        blocked[self.lm.ids.eos] = False
        return blocked

    @cached_property
    def single_line_blocked(self) -> torch.Tensor:
        """Bool [V]: what a one-line value (genres) may not contain: a caption's blocked tokens, and any
        token holding a line break (the newline token itself ends the value)."""
        texts = self.token_texts
        breaks = torch.zeros(self.lm.vocab_size, dtype=torch.bool)
        breaks[: len(texts)] = torch.tensor(["\n" in t or "\r" in t for t in texts])
        return self.caption_blocked | breaks.to(self.lm.device)

    @cached_property
    def indented(self) -> torch.Tensor:
        """Bool [V]: tokens whose text starts with a space or a tab (YAML continuation lines)."""
        texts = self.token_texts
        flags = torch.zeros(self.lm.vocab_size, dtype=torch.bool)
        flags[: len(texts)] = torch.tensor([t[:1] in (" ", "\t") for t in texts])
        return flags.to(self.lm.device)


def only(logits: torch.Tensor, allowed) -> torch.Tensor:
    allowed = list(allowed)
    out = torch.full_like(logits, NEG_INF)
    out[allowed] = logits[allowed]
    return out


@dataclass
class _Segment:
    kind: str  # "force" or a field name
    tokens: list[int] = field(default_factory=list)


class CotConstraint:
    """Decides, token by token, what the LM may write inside (and after) the `<think>` block.

    `fields` are generated in order; `user` values are injected instead of generated. With
    `close_think`, `</think>` is forced at the end and, with `free_text_after`, open text (lyrics)
    follows until the end-of-turn token.
    """

    def __init__(self, vocab: Vocabulary, fields: list[str], user: Metadata | None = None,
                 close_think: bool = False, free_text_after: bool = False):
        self.vocab = vocab
        ids = vocab.lm.ids
        user_values = (user or Metadata()).as_dict()
        segments = [_Segment("force", [ids.think_start, vocab.newline])]
        for name in fields:
            segments.append(_Segment("force", list(vocab.names[name])))
            if name in user_values:
                segments.append(_Segment("force", vocab.lm.encode(f" {user_values[name]}\n")))
            else:
                segments.append(_Segment(name))
        if close_think:
            segments.append(_Segment("force", [ids.think_end]))
        self.free_text_after = free_text_after
        self.segments = segments
        self.index = 0
        self.position = 0  # within a forced segment
        self.value: tuple[int, ...] = ()  # tokens of the current field value
        self.caption_tokens = 0
        self.caption_has_text = False
        self.after_newline = False
        self.in_free_text = False
        self.done = False

    @property
    def _segment(self) -> _Segment:
        return self.segments[self.index]

    def _next_segment(self) -> None:
        self.index += 1
        self.position, self.value = 0, ()
        self.caption_tokens, self.caption_has_text, self.after_newline = 0, False, False
        if self.index == len(self.segments):
            if self.free_text_after:
                self.in_free_text = True
            else:
                self.done = True

    # -- masking ----------------------------------------------------------------------------------

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits [V] with every token the rules forbid at this point set to -inf."""
        if self.in_free_text:
            return logits.masked_fill(self.vocab.free_text_blocked, NEG_INF)
        segment = self._segment
        if segment.kind == "force":
            return only(logits, [segment.tokens[self.position]])
        if segment.kind == "caption":
            return self._caption_mask(logits)
        if segment.kind == "genres":
            return self._genres_mask(logits)
        trie = self.vocab.tries[segment.kind]
        if segment.kind == "language" and not self.value:
            first = torch.tensor(sorted(trie.children[()]), device=logits.device)
            return only(logits, [int(first[logits[first].argmax()])])  # greedy, as upstream
        allowed = set(trie.children.get(self.value, ()))
        if self.value in trie.complete:
            if segment.kind in ("keyscale", "timesignature"):
                allowed = set()
            allowed.add(self.vocab.newline)
        return only(logits, allowed)

    def _caption_mask(self, logits: torch.Tensor) -> torch.Tensor:
        newline = self.vocab.newline
        masked = logits.masked_fill(self.vocab.caption_blocked, NEG_INF)
        if self.after_newline:
            if self.caption_tokens < MAX_CAPTION_TOKENS and self.vocab.text(int(masked.argmax()))[:1] in (" ", "\t"):
                return self._indented_only(masked)  # a folded continuation line
            # The caption is over: end it here and force the next field's name.
            self._next_segment()
            return self.mask(logits)
        if self.caption_tokens >= MAX_CAPTION_TOKENS:
            return only(logits, [newline])
        if not self.caption_has_text:
            masked[newline] = NEG_INF
        return masked

    def _genres_mask(self, logits: torch.Tensor) -> torch.Tensor:
        newline = self.vocab.newline
        if self.caption_tokens >= MAX_GENRES_TOKENS:
            return only(logits, [newline])
        masked = logits.masked_fill(self.vocab.single_line_blocked, NEG_INF)
        if self.caption_has_text:
            masked[newline] = logits[newline]
        return masked

    def _indented_only(self, masked: torch.Tensor) -> torch.Tensor:
        return masked.masked_fill(~self.vocab.indented, NEG_INF)

    # -- advancing --------------------------------------------------------------------------------

    def advance(self, token: int) -> None:
        """Record the sampled token and move the machine on."""
        if self.in_free_text:
            if token == self.vocab.lm.ids.eos:
                self.done = True
            return
        segment = self._segment
        if segment.kind == "force":
            self.position += 1
            if self.position == len(segment.tokens):
                self._next_segment()
            return
        if segment.kind == "genres":
            if token == self.vocab.newline:
                self._next_segment()
            else:
                self.caption_tokens += 1
                self.caption_has_text = self.caption_has_text or bool(self.vocab.text(token).strip())
            return
        if segment.kind == "caption":
            text = self.vocab.text(token)
            self.caption_tokens += 1
            self.caption_has_text = self.caption_has_text or bool(text.strip())
            self.after_newline = text.endswith("\n")
            return
        if token == self.vocab.newline:
            self._next_segment()
        else:
            self.value = self.value + (token,)


class FreeText:
    """`constrained_decoding: false`: nothing is masked, as upstream then runs no logits processor at all.

    The pass ends where upstream's loop stops (the end-of-turn or the padding token) or, for the
    metadata pass alone (`stop_at_think_end`), once `</think>` is written: upstream's model would go on
    to write audio codes there, which that pass throws away.
    """

    def __init__(self, ids: TokenIds, stop_at_think_end: bool, free_text_after: bool):
        self.stops = {ids.eos, ids.pad} | ({ids.think_end} if stop_at_think_end else set())
        self.free_text_after = free_text_after
        self.done = False

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        return logits

    def advance(self, token: int) -> None:
        self.done = token in self.stops
