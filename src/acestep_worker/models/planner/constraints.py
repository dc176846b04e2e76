"""Constrained decoding of the `<think>` block: a finite-state machine over token ids, to upstream's rules.

The machine walks a plan: `<think>`, a newline, then for each field its name (forced), its value, and
finally `</think>` (or nothing, when the caller stops after the metadata). Values follow upstream's
`MetadataConstrainedLogitsProcessor`:

* bpm, duration, timesignature, keyscale, language: prefix trees built from the tokenization of
  `"<name>: <value>"`, so only complete valid values can be followed by the newline that ends them;
* language: the first token is the best-scoring first token of any valid code (greedy);
* caption: any text but the backtick token and the 64,000 audio-code tokens, at most 512 tokens;
* genres (audio understanding only): free text on one line, without backticks, special or audio-code
  tokens, at most 64 tokens; the newline ends it. Upstream, without its genres vocabulary file (absent
  from its repository), leaves the text open and moves on before that newline is written, so its next
  field name comes out a character short (`eyscale:`); we keep the name whole;
* after `</think>` (format, sample and understanding modes): any text but audio codes, to the end-of-turn;
* a value the user gave is injected as the tokens of `" <value>\n"`.

The caption hands over as upstream's does. After a token holding a newline, the best-scoring next token
(of the unmasked logits) decides: indented, the caption goes on; otherwise the model writes what follows
itself, unmasked, until a token holding a colon. The text before that colon names the field to go on
with: a field of this pass still ahead (duration, genres, keyscale, language, timesignature) continues
with its value, and the fields between are never written; any other name (an unknown one, bpm, caption,
or genres where this pass has none) moves on to the field after the caption, its name forced. Upstream
would stay in genres for good there; we move on instead. Text written this way can lack fields or name
them oddly, so such a pass's metadata is read as upstream's parser reads it: what cannot be read is left
unset (see `strict_output`). The end-of-turn and padding tokens end every pass, wherever written, as
they end upstream's loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch

from ...schema.values import LANGUAGES, TIME_SIGNATURES
from .lm import VALID_CODES, PlannerLM, TokenIds
from .metadata import (
    BPM_RANGE,
    DURATION_RANGE,
    KEYSCALES,
    MAX_CAPTION_TOKENS,
    MAX_GENRES_TOKENS,
    UNDERSTAND_FIELDS,
    Metadata,
)

NEG_INF = float("-inf")
# The fields upstream continues with when the model names one after a caption.
HANDOVER_FIELDS = ("duration", "genres", "keyscale", "language", "timesignature")


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
    def special_ids(self) -> list[int]:
        tokenizer = self.lm.tokenizer
        return sorted(set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values()))

    @cached_property
    def codes_blocked(self) -> torch.Tensor:
        """Bool [V]: the 64,000 valid audio-code tokens (and the embedding's padding rows, which have no
        token): what upstream blocks in open text after `</think>`."""
        blocked = torch.zeros(self.lm.vocab_size, dtype=torch.bool)
        blocked[self.lm.ids.first_code:self.lm.ids.first_code + VALID_CODES] = True
        blocked[len(self.lm.tokenizer):] = True
        return blocked.to(self.lm.device)

    @cached_property
    def caption_blocked(self) -> torch.Tensor:
        """Bool [V]: what a caption may not contain: audio codes and the backtick token (upstream blocks
        the one token `` ` `` encodes to, not every token holding one)."""
        blocked = self.codes_blocked.clone()
        blocked[self.lm.encode("`")[-1]] = True
        return blocked

    @cached_property
    def single_line_blocked(self) -> torch.Tensor:
        """Bool [V]: what a one-line value (genres) may not contain: special tokens, audio codes, backticks
        and any token holding a line break (the newline token itself ends the value)."""
        texts = self.lm.tokenizer.batch_decode([[i] for i in range(len(self.lm.tokenizer))])  # once: it is cached
        blocked = torch.zeros(self.lm.vocab_size, dtype=torch.bool)
        blocked[: len(texts)] = torch.tensor(["\n" in t or "\r" in t or "`" in t for t in texts])
        blocked[self.special_ids] = True
        return self.caption_blocked | blocked.to(self.lm.device)


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
        self.stops = {ids.eos, ids.pad}
        user_values = (user or Metadata()).as_dict()
        segments = [_Segment("force", [ids.think_start, vocab.newline])]
        self.value_segment: dict[str, int] = {}  # field -> the segment after its name (its value)
        for name in fields:
            segments.append(_Segment("force", list(vocab.names[name])))
            self.value_segment[name] = len(segments)
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
        self.text_tokens = 0  # of the caption or genres value
        self.value_has_text = False
        self.after_newline = False
        self.handing_over = False  # the model writes the name of the field after the caption itself
        self.pending_name = ""
        self.handed_over = False
        self.in_free_text = False
        self.done = False

    @property
    def strict_output(self) -> bool:
        """Whether every value was written under the machine's rules (so a bad one is a bug to report)."""
        return not self.handed_over

    @property
    def _segment(self) -> _Segment:
        return self.segments[self.index]

    def _next_segment(self, index: int | None = None) -> None:
        self.index = self.index + 1 if index is None else index
        self.position, self.value = 0, ()
        self.text_tokens, self.value_has_text, self.after_newline = 0, False, False
        self.handing_over, self.pending_name = False, ""
        if self.index == len(self.segments):
            if self.free_text_after:
                self.in_free_text = True
            else:
                self.done = True

    # -- masking ----------------------------------------------------------------------------------

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits [V] with every token the rules forbid at this point set to -inf."""
        if self.in_free_text:
            return logits.masked_fill(self.vocab.codes_blocked, NEG_INF)
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
        if self.after_newline:
            self.after_newline = False
            top = self.vocab.text(int(logits.argmax()))
            if top and top[0] not in " \t":  # not a folded continuation line: the model names what follows
                self.handing_over, self.pending_name, self.handed_over = True, "", True
        if self.handing_over:
            return logits
        if self.text_tokens >= MAX_CAPTION_TOKENS:
            return only(logits, [self.vocab.newline])
        return logits.masked_fill(self.vocab.caption_blocked, NEG_INF)

    def _genres_mask(self, logits: torch.Tensor) -> torch.Tensor:
        newline = self.vocab.newline
        if self.text_tokens >= MAX_GENRES_TOKENS:
            return only(logits, [newline])
        masked = logits.masked_fill(self.vocab.single_line_blocked, NEG_INF)
        if self.value_has_text:
            masked[newline] = logits[newline]
        return masked

    # -- advancing --------------------------------------------------------------------------------

    def advance(self, token: int) -> None:
        """Record the sampled token and move the machine on."""
        if token in self.stops:  # upstream's loop ends on these, whatever the machine's state
            self.done = True
            return
        if self.in_free_text:
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
                self.text_tokens += 1
                self.value_has_text = self.value_has_text or bool(self.vocab.text(token).strip())
            return
        if segment.kind == "caption":
            self._advance_caption(self.vocab.text(token))
            return
        if token == self.vocab.newline:
            self._next_segment()
        else:
            self.value = self.value + (token,)

    def _advance_caption(self, text: str) -> None:
        self.text_tokens += 1
        self.after_newline = "\n" in text
        if not self.handing_over:
            return
        self.pending_name += text
        if ":" not in text:
            return
        name = self.pending_name.strip().rstrip(":").strip().lower()
        if name in HANDOVER_FIELDS and name in self.value_segment and self.value_segment[name] > self.index:
            self._next_segment(self.value_segment[name])
        else:
            self._next_segment()


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

    strict_output = False  # nothing was constrained: what cannot be read is left unset, as upstream does

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        return logits

    def advance(self, token: int) -> None:
        self.done = token in self.stops
