"""The planner: what the 5 Hz LM adds to a request.

* `write_metadata` (phase 1): the chain of thought that fills bpm, caption, duration, key,
  language and time signature; values the user gave are injected, never overridden.
* `write_codes` (phase 2): 5 audio codes per second of music for each song of a batch, which the
  DiT then follows (cover mode).
* `format_input`: the LM rewrites a caption and lyrics and fills metadata around the user's values.
* `create_sample`: a short description becomes a caption, lyrics and metadata.
* `understand`: audio codes become metadata (with genres), a caption and lyrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Protocol

import torch

from ...errors import InputError
from ...schema.units import CODES_PER_SECOND
from .chat_prompts import codes_prompts, cot_prompts, format_prompt, sample_prompt, understand_prompt
from .constraints import CotConstraint, FreeText, Vocabulary
from .decoding import PairedDecoder, RepetitionPenalty, SamplingParams, generators_for, sample_tokens
from .lm import NUM_CODE_TOKENS, VALID_CODES, PlannerLM
from .metadata import FIELD_ORDER, UNDERSTAND_FIELDS, Metadata, cot_text, parse_cot

MAX_LYRICS_TOKENS = 1536  # format/sample modes: the rewritten lyrics after </think>
CONTEXT_TOKENS = 8192  # cap on prompt + generation, well inside every planner model's window
# Audio understanding, as upstream runs it: temperature 0.3, no top-k, no top-p, no guidance; at most
# 4096 new tokens, capped by its 4096-token window less 64 (here, by what the context has left).
UNDERSTAND_PARAMS = SamplingParams(temperature=0.3, top_k=0, top_p=1.0, cfg_scale=1.0)
UNDERSTAND_MAX_TOKENS = 4032
# Unconstrained codes (constrained_decoding off): upstream lets the LM write up to this many tokens beyond
# five per second, and stops at its end-of-turn token. Every this many steps the loop looks (one host sync).
FREE_CODES_EXTRA_TOKENS = 500
FREE_CODES_STOP_CHECK = 64



class Progress(Protocol):
    """How the LM's loops report and stop: `check` raises to stop; `code_step` reports codes written."""

    def check(self) -> object: ...

    def code_step(self, done: int, total: int) -> None: ...


@dataclass(frozen=True)
class SongText:
    """The text the LM reads: the caption and lyrics, and the caption of its unconditional prompt."""

    caption: str
    lyrics: str
    negative: str | None = None  # lm_negative_prompt (classifier-free guidance's other branch)


@dataclass
class TextResult:
    metadata: Metadata
    lyrics: str | None  # format/sample modes only
    text: str  # what the LM wrote, for logs and debugging
    tokens: int
    seconds: float
    ids: list[int] | None = None  # the tokens written


class Planner:
    def __init__(self, lm: PlannerLM):
        self.lm = lm
        self.vocab = Vocabulary(lm)

    @property
    def name(self) -> str:
        return self.lm.name

    def _context_limit(self) -> int:
        return min(CONTEXT_TOKENS, int(getattr(self.lm.model.config, "max_position_embeddings", CONTEXT_TOKENS)))

    def _encode_prompt(self, text: str, field: str, room: int) -> list[int]:
        ids = self.lm.encode(text)
        if len(ids) + room > self._context_limit():
            raise InputError(field, f"the caption and lyrics are too long for the planner: {len(ids)} prompt tokens "
                             f"plus {room} to generate exceed its {self._context_limit()}-token context; "
                             "shorten the lyrics or turn the planner features off")
        return ids

    # -- phase 1 ----------------------------------------------------------------------------------

    def write_metadata(self, text: SongText, user: Metadata, params: SamplingParams, seed: int,
                       fields: list[str] | None = None, progress: Progress | None = None) -> TextResult:
        """Generate the `<think>` block (without `</think>`) for `fields` (default: all six)."""
        cond, uncond = cot_prompts(self.lm, text.caption, text.lyrics, text.negative)
        budget = 700  # six fields: names, values and a caption of at most 512 tokens
        prompts = [self._encode_prompt(cond, "lyrics", budget)]
        uncond_ids = [self._encode_prompt(uncond, "lyrics", budget)] if params.uses_cfg else None
        constraint = self._constraint(params, list(fields or FIELD_ORDER), user, stop_at_think_end=True)
        return self._generate_text(PairedDecoder(self.lm, prompts, uncond_ids, budget), constraint, params, seed,
                                   budget, progress)

    # -- phase 2 ----------------------------------------------------------------------------------

    @torch.no_grad()
    def write_codes(self, text: SongText, metadata: Metadata, seconds: float, seeds: list[int],
                    params: SamplingParams, progress: Progress | None = None) -> list[list[int]]:
        """Exactly `int(seconds * 5)` audio codes (0..63999) for each seed.

        The count is fixed by construction: only code tokens are allowed until the count is reached,
        and then the end token. So the loop runs a known number of steps and never has to look at a
        sampled token on the host until the end.
        """
        count = int(seconds * CODES_PER_SECOND)
        cond, uncond = codes_prompts(self.lm, text.caption, text.lyrics, cot_text(metadata), text.negative)
        cond_ids = self.lm.encode(cond)
        if len(cond_ids) + count + 1 > self._context_limit():
            raise InputError("duration", f"{seconds:g} s needs {count} audio codes, which with the {len(cond_ids)}-token "
                             f"prompt exceed the planner's {self._context_limit()}-token context; ask for a "
                             "shorter duration or shorter lyrics")
        uncond_ids = [self.lm.encode(uncond)] * len(seeds) if params.uses_cfg else None
        generators = generators_for(seeds, self.lm.device)
        if not params.constrained:
            room = min(count + FREE_CODES_EXTRA_TOKENS, self._context_limit() - len(cond_ids))
            decoder = PairedDecoder(self.lm, [cond_ids] * len(seeds), uncond_ids, room)
            return self._free_codes(decoder, params, generators, room, progress)
        decoder = PairedDecoder(self.lm, [cond_ids] * len(seeds), uncond_ids, count)
        penalty = RepetitionPenalty.for_decoder(decoder, params.repetition_penalty)
        first = self.lm.ids.first_code
        codes = torch.empty((len(seeds), count), dtype=torch.long, device=self.lm.device)
        for step in range(count):
            # Only the 64,000 valid code tokens may follow, so sample within that slice of the
            # vocabulary: the rest would be -inf anyway (the penalty keeps -inf), and sorting a third
            # of the vocabulary for top-p is three times cheaper.
            logits = decoder.guided_logits(params.cfg_scale)[:, first:first + VALID_CODES]
            if penalty is not None:
                logits = penalty.apply(logits, first)
            codes[:, step] = sample_tokens(logits, params, generators)
            if penalty is not None:
                penalty.record(codes[:, step] + first)
            if step + 1 < count:
                decoder.step(codes[:, step] + first)
            if progress is not None:
                progress.code_step(step + 1, count)
                progress.check()
        return codes.tolist()

    def _free_codes(self, decoder: PairedDecoder, params: SamplingParams, generators: list[torch.Generator],
                    room: int, progress: Progress | None) -> list[list[int]]:
        """Unconstrained codes: any token may be written; each row's audio codes up to its first stop
        token are kept (as upstream's parser reads them out of the text), however many that is."""
        stops = torch.tensor([self.lm.ids.eos, self.lm.ids.pad], device=self.lm.device)
        penalty = RepetitionPenalty.for_decoder(decoder, params.repetition_penalty)
        written = torch.empty((decoder.batch, room), dtype=torch.long, device=self.lm.device)
        steps = 0
        for step in range(room):
            logits = decoder.guided_logits(params.cfg_scale)
            if penalty is not None:
                logits = penalty.apply(logits)
            written[:, step] = sample_tokens(logits, params, generators)
            if penalty is not None:
                penalty.record(written[:, step])
            steps = step + 1
            if steps % FREE_CODES_STOP_CHECK == 0 and bool(torch.isin(written[:, :steps], stops).any(1).all()):
                break
            if steps < room:
                decoder.step(written[:, step])
            if progress is not None:
                progress.code_step(steps, room)
                progress.check()
        first, stop_ids = self.lm.ids.first_code, set(stops.tolist())
        codes = []
        for row in written[:, :steps].tolist():
            ended = next((i for i, token in enumerate(row) if token in stop_ids), len(row))
            codes.append([token - first for token in row[:ended] if first <= token < first + NUM_CODE_TOKENS])
        return codes

    # -- format and sample modes ------------------------------------------------------------------

    def format_input(self, text: SongText, user: Metadata, params: SamplingParams, seed: int,
                     progress: Progress | None = None) -> TextResult:
        """The LM rewrites caption and lyrics; the user's bpm/duration/key/time signature/language are
        kept (injected) and the rest is filled in."""
        budget = 700 + MAX_LYRICS_TOKENS
        prompt = self._encode_prompt(format_prompt(self.lm, text.caption, text.lyrics), "lyrics", budget)
        constraint = self._constraint(params, list(FIELD_ORDER), Metadata(**{
            k: v for k, v in user.as_dict().items() if k != "caption"}), free_text_after=True)
        result = self._generate_text(PairedDecoder(self.lm, [prompt], None, budget), constraint,
                                     _without_cfg(params), seed, budget, progress)
        result.lyrics = result.lyrics or text.lyrics
        return result

    def create_sample(self, query: str, instrumental: bool, language: str | None, params: SamplingParams,
                      seed: int, progress: Progress | None = None) -> TextResult:
        """A description becomes a caption, lyrics and metadata; `language` (a code, or None) is kept."""
        budget = 700 + MAX_LYRICS_TOKENS
        prompt = self._encode_prompt(sample_prompt(self.lm, query, instrumental), "sample_query", budget)
        user = Metadata(language=language) if language else Metadata()
        constraint = self._constraint(params, list(FIELD_ORDER), user, free_text_after=True)
        result = self._generate_text(PairedDecoder(self.lm, [prompt], None, budget), constraint,
                                     _without_cfg(params), seed, budget, progress)
        if not result.lyrics and instrumental:
            result.lyrics = "[Instrumental]"
        return result

    def understand(self, code_string: str, seed: int, params: SamplingParams = UNDERSTAND_PARAMS,
                   progress: Progress | None = None, max_tokens: int | None = None) -> TextResult:
        """Audio codes (upstream's `<|audio_code_N|>` string) become metadata with genres, a caption, and
        the lyrics written after `</think>` (at most `max_tokens` in all, default upstream's 4032)."""
        max_tokens = UNDERSTAND_MAX_TOKENS if max_tokens is None else max_tokens
        prompt = self.lm.encode(understand_prompt(self.lm, code_string))
        room = min(max_tokens, self._context_limit() - len(prompt))
        if room < min(700, max_tokens):  # the metadata alone needs this much
            raise InputError("src_audio", f"the source's {code_string.count('<|audio_code_')} audio codes make a "
                             f"{len(prompt)}-token prompt, too long for the planner's {self._context_limit()}-token "
                             "context; send a shorter source")
        constraint = self._constraint(params, list(UNDERSTAND_FIELDS), None, free_text_after=True)
        return self._generate_text(PairedDecoder(self.lm, [prompt], None, room), constraint, _without_cfg(params),
                                   seed, room, progress)

    # -- the token loop ---------------------------------------------------------------------------

    def _constraint(self, params: SamplingParams, fields: list[str], user: Metadata | None,
                    stop_at_think_end: bool = False, free_text_after: bool = False) -> CotConstraint | FreeText:
        """The metadata machine, or with `constrained` off nothing but upstream's stop tokens."""
        if not params.constrained:
            return FreeText(self.lm.ids, stop_at_think_end, free_text_after)
        return CotConstraint(self.vocab, fields, user, close_think=free_text_after, free_text_after=free_text_after)

    @torch.no_grad()
    def _generate_text(self, decoder: PairedDecoder, constraint: CotConstraint, params: SamplingParams, seed: int,
                       max_tokens: int, progress: Progress | None = None) -> TextResult:
        start = time.perf_counter()
        generator = generators_for([seed], self.lm.device)
        penalty = RepetitionPenalty.for_decoder(decoder, params.repetition_penalty)
        tokens: list[int] = []
        while not constraint.done and len(tokens) < max_tokens:
            logits = constraint.mask(decoder.guided_logits(params.cfg_scale)[0])[None]
            if penalty is not None:
                logits = penalty.apply(logits)
            sampled = sample_tokens(logits, params, generator)
            if penalty is not None:
                penalty.record(sampled)  # on the device already: no copy back per token
            token = int(sampled[0])
            constraint.advance(token)
            tokens.append(token)
            if not constraint.done and len(tokens) < max_tokens:
                decoder.step(torch.tensor([token]))
            if progress is not None:
                progress.check()
        text = self.lm.decode(tokens)
        metadata = parse_cot(text, strict=constraint.strict_output)
        lyrics = _lyrics_after_think(text, self.lm.tokenizer.eos_token) if constraint.free_text_after else None
        return TextResult(metadata, lyrics, text, len(tokens), time.perf_counter() - start, tokens)


def _without_cfg(params: SamplingParams) -> SamplingParams:
    # Format and sample modes run without guidance upstream.
    return replace(params, cfg_scale=1.0)


def _lyrics_after_think(text: str, eos: str) -> str | None:
    if "</think>" not in text:
        return None
    lyrics = text.split("</think>", 1)[1].replace(eos, "").strip()
    for header in ("# Lyrics\n", "# Lyric\n"):
        if lyrics.lower().startswith(header.lower()):
            lyrics = lyrics[len(header):].strip()
            break
    return lyrics or None
