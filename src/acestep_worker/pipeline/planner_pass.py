"""From a request to what the synthesizer makes: the planner's part of a generation.

Upstream's order, with the user always winning: a sample query (or sample mode) invents caption,
lyrics and metadata; `use_format` rewrites caption and lyrics; the metadata chain of thought fills
whatever is still missing; `thinking` writes the audio codes. Without a planner, requests that need
one fail with a clear error and the rest simply use what the user gave.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Callable

from ..errors import PlannerUnavailableError
from ..models.planner.decoding import SamplingParams
from ..models.planner.metadata import FIELD_ORDER, Metadata
from ..models.planner.planner import Planner
from ..schema.request import GenerationRequest

DEFAULT_DURATION_S = 30.0
DEFAULT_LANGUAGE = "en"

# A sample query's language and "instrumental" hints, as upstream reads them (first match wins).
_LANGUAGE_HINTS = (
    ("english", "en"), ("en", "en"), ("chinese", "zh"), ("中文", "zh"), ("zh", "zh"), ("mandarin", "zh"),
    ("japanese", "ja"), ("日本語", "ja"), ("ja", "ja"), ("korean", "ko"), ("한국어", "ko"), ("ko", "ko"),
    ("spanish", "es"), ("español", "es"), ("es", "es"), ("french", "fr"), ("français", "fr"), ("fr", "fr"),
    ("german", "de"), ("deutsch", "de"), ("de", "de"), ("italian", "it"), ("italiano", "it"), ("it", "it"),
    ("portuguese", "pt"), ("português", "pt"), ("pt", "pt"), ("russian", "ru"), ("русский", "ru"), ("ru", "ru"),
    ("bengali", "bn"), ("bn", "bn"), ("hindi", "hi"), ("hi", "hi"), ("arabic", "ar"), ("ar", "ar"),
    ("thai", "th"), ("th", "th"), ("vietnamese", "vi"), ("vi", "vi"), ("indonesian", "id"), ("id", "id"),
    ("turkish", "tr"), ("tr", "tr"), ("dutch", "nl"), ("nl", "nl"), ("polish", "pl"), ("pl", "pl"),
)


def query_hints(query: str) -> tuple[str | None, bool]:
    """(language code or None, instrumental) read from a free-text description."""
    text = query.strip().lower()
    language = None
    for name, code in _LANGUAGE_HINTS:
        if len(name) <= 2:
            pattern = r"(?:^|\s|[.,;:!?])" + re.escape(name) + r"(?:$|\s|[.,;:!?])"
        else:
            pattern = r"\b" + re.escape(name) + r"\b"
        if re.search(pattern, text):
            language = code
            break
    instrumental = ("instrumental" in text or "pure music" in text or "pure instrument" in text
                    or text.endswith(" solo") or text == "solo")
    return language, instrumental


@dataclass
class Resolved:
    """Everything the synthesizer needs for one request, after the planner (if any) ran."""

    caption: str
    lyrics: str
    language: str
    bpm: int | None
    key_scale: str | None
    time_signature: str | None
    duration_s: float
    codes: list[list[int]] | None = None  # per song, 5 per second, when `thinking`
    lm_metadata: dict = field(default_factory=dict)  # what the planner wrote (not what the user gave)
    timings: dict[str, float] = field(default_factory=dict)


def sampling_params(request: GenerationRequest) -> SamplingParams:
    return SamplingParams(temperature=request.lm_temperature, top_k=request.lm_top_k, top_p=request.lm_top_p,
                          cfg_scale=request.lm_cfg_scale)


def user_metadata(request: GenerationRequest) -> Metadata:
    return Metadata(bpm=request.bpm, duration=int(request.duration) if request.duration else None,
                    keyscale=request.key_scale, timesignature=request.time_signature,
                    language=request.vocal_language if request.vocal_language != "unknown" else None)


def resolve(request: GenerationRequest, planner: Planner | None, seeds: list[int],
            on_stage: Callable[[str], None] | None = None, on_code_step: Callable[[int, int], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> Resolved:
    if request.needs_planner and planner is None:
        wanted = [name for name, on in (("thinking", request.thinking), ("use_format", request.use_format),
                                        ("sample_mode", request.sample_mode),
                                        ("sample_query", bool(request.sample_query.strip()))) if on]
        raise PlannerUnavailableError(f"{', '.join(wanted)} needs the 5 Hz planner LM, which this server does not "
                                      "have (set ACESTEP_LM_MODEL_PATH); send the request without it")
    user = user_metadata(request)
    caption, lyrics, written, timings = request.caption, request.lyrics, Metadata(), {}
    run_cot = planner is not None and request.use_cot_metas
    params, seed = sampling_params(request), seeds[0]

    def stage(name: str) -> float:
        if on_stage is not None:
            on_stage(name)
        return time.perf_counter()

    if planner is not None and (request.sample_mode or request.sample_query.strip()):
        start = stage("planning")
        hint_language, instrumental = query_hints(request.sample_query)
        result = planner.create_sample(request.sample_query, instrumental, user.language or hint_language,
                                       params, seed, should_stop)
        caption, lyrics, written = result.metadata.caption or caption, result.lyrics or lyrics, result.metadata
        run_cot = False  # the sample already carries its metadata
        timings["planner_sample"] = time.perf_counter() - start
    if planner is not None and request.use_format:
        start = stage("planning")
        result = planner.format_input(caption, lyrics, user, params, seed, should_stop)
        caption, lyrics = result.metadata.caption or caption, result.lyrics or lyrics
        written = result.metadata.merged_over(written)
        run_cot = run_cot and result.metadata.duration is None
        timings["planner_format"] = time.perf_counter() - start
    prompt_caption = caption  # the LM's own prompts keep the caption from before its rewrite
    if run_cot and not all((user.bpm, user.keyscale, user.timesignature, user.duration)):
        start = stage("planning")
        fields = [f for f in FIELD_ORDER if not (f == "caption" and not request.use_cot_caption)
                  and not (f == "language" and not request.use_cot_language)]
        result = planner.write_metadata(prompt_caption, lyrics, user, params, seed, fields,
                                        request.lm_negative_prompt, should_stop)
        written = result.metadata.merged_over(written)
        if request.use_cot_caption and result.metadata.caption:
            caption = result.metadata.caption
        timings["planner_metadata"] = time.perf_counter() - start

    final = user.merged_over(written)  # the user's values always win
    resolved = Resolved(
        caption=caption, lyrics=lyrics, language=final.language or DEFAULT_LANGUAGE, bpm=final.bpm,
        key_scale=final.keyscale, time_signature=final.timesignature,
        duration_s=float(request.duration or final.duration or DEFAULT_DURATION_S),
        lm_metadata={k: v for k, v in written.as_dict().items() if getattr(user, k) is None}, timings=timings)
    if request.thinking:
        start = stage("audio_codes")
        cot = Metadata(bpm=resolved.bpm, caption=resolved.caption, duration=int(resolved.duration_s),
                       keyscale=resolved.key_scale, language=resolved.language,
                       timesignature=resolved.time_signature)
        resolved.codes = planner.write_codes(prompt_caption, lyrics, cot, resolved.duration_s, seeds, params,
                                             request.lm_negative_prompt, on_code_step, should_stop)
        timings["planner_codes"] = time.perf_counter() - start
    return resolved
