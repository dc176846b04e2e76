"""Upstream's OpenRouter-style `POST /v1/chat/completions`, as a translation to and from the one schema.

A request is read into generation fields (then validated by `schema.request.parse`, so every range,
alias and refusal is the one `/release_task` has):

* the last `user` message's text is read as upstream's current adapter reads it: `<prompt>...</prompt>`
  and `<lyrics>...</lyrics>` tags; untagged text that looks like lyrics (section markers such as
  `[Verse`, or four or more short lines) is the lyrics, anything else the caption. A top-level
  `lyrics` leaves the text only the caption; `sample_mode: true` makes the whole text the planner's
  description (`sample_query`).
* `input_audio` parts (base64 or a data URI, with a `format`) become audio sources in order: for
  the editing tasks the first is the source and the second the reference; for text2music the first
  is the reference.
* `audio_config` carries duration, bpm, key, time signature, language, instrumental and the output
  format; `temperature`/`top_p`/`top_k` are the planner's sampling values; `seed` is a seed or a
  comma list; the other upstream fields (thinking, guidance_scale, batch_size, use_format, the CoT
  switches, task_type, repainting_*, audio_cover_strength) and any generation field of the schema
  pass through under their own names. OpenAI's own options that mean nothing for music
  (`max_tokens`, `n`, `stop`, ...) are ignored.

The answer is a `chat.completion` (or, streamed, `chat.completion.chunk` events) whose message holds
a markdown summary of the song (`## Metadata`, `## Lyrics`) and `audio`: one
`{"type": "audio_url", "audio_url": {"url": "data:<type>;base64,..."}}` per song.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from ...errors import InputError, echo
from ...schema.formats import FORMATS
from ...schema.request import GenerationRequest, TimedRequest, parse
from ...schema.task_types import TASK_TYPES

MODEL_PREFIX = "acestep/"
# Upstream routes a first audio part to the source for these tasks, to the reference otherwise.
SOURCE_LED_TASKS = frozenset(TASK_TYPES) - {"text2music"}
# OpenAI chat options that say nothing about a song; upstream accepts and ignores them, as here.
IGNORED_OPENAI_FIELDS = frozenset({
    "modalities", "max_tokens", "max_completion_tokens", "n", "stop", "user", "presence_penalty",
    "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "response_format", "stream_options",
    "tools", "tool_choice", "parallel_tool_calls", "metadata", "store", "service_tier", "audio",
    "reasoning_effort", "prediction", "web_search_options", "ai_token"})
# Fields this module reads itself; everything else must be a field of the schema.
CHAT_FIELDS = frozenset({"model", "messages", "stream", "audio_config", "temperature", "top_p", "top_k", "seed",
                         "lyrics", "sample_mode"})
AUDIO_CONFIG_FIELDS = {"duration": "duration", "bpm": "bpm", "key_scale": "key_scale",
                       "time_signature": "time_signature", "vocal_language": "vocal_language",
                       "format": "audio_format"}
LYRIC_MARKERS = ("[verse", "[chorus", "[bridge", "[intro", "[outro", "[hook", "[pre-chorus", "[refrain", "[inst")
MAX_MESSAGES = 100
NO_INPUT = "No valid prompt, lyrics, sample query, or input audio found in request"


@dataclass(frozen=True)
class ChatRequest:
    """A chat completion read into one generation request, with what the answer needs."""

    generation: GenerationRequest
    stream: bool
    model_id: str | None  # echoed in the answer, as upstream does (None: the route names the default model)


# -- the request ----------------------------------------------------------------------------------

def read_chat(body: dict) -> ChatRequest:
    """A chat completion body -> the generation it asks for; InputError naming the field otherwise."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or len(messages) > MAX_MESSAGES:
        raise InputError("messages", f"messages must be a list of 1 to {MAX_MESSAGES} chat messages "
                                     '({"role": "user", "content": ...})')
    text, audio = _last_user_turn(messages)
    fields = _text_fields(text, body)
    config = _object(body.get("audio_config"), "audio_config")
    for name, target in AUDIO_CONFIG_FIELDS.items():
        if config.get(name) is not None:
            fields[target] = config[name]
    unknown = set(config) - set(AUDIO_CONFIG_FIELDS) - {"instrumental"}
    if unknown:
        shown = ", ".join(echo(name, 30) for name in sorted(map(str, unknown))[:5])
        raise InputError("audio_config", f"audio_config has unknown fields {shown}; accepted: "
                                         f"{', '.join([*AUDIO_CONFIG_FIELDS, 'instrumental'])}")
    if _flag(config.get("instrumental"), "audio_config.instrumental") and not fields.get("lyrics"):
        fields["lyrics"] = "[Instrumental]"
    fields.update(_sampling(body))
    for name, value in body.items():
        if name in CHAT_FIELDS or name in IGNORED_OPENAI_FIELDS:
            continue
        if name in fields:
            raise InputError(name, f"{name} is given twice (as a field and in the message or audio_config); send one")
        fields[name] = value
    _route_audio(fields, audio)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise InputError("model", f"model must be a model id such as {MODEL_PREFIX}acestep-v15-turbo; "
                                  f"got {echo(model)}")
    if model:
        fields["model"] = model.removeprefix(MODEL_PREFIX)
    generation = parse(fields, TimedRequest)
    if not (generation.caption or generation.lyrics or generation.sample_query or generation.sample_mode
            or generation.src_audio or generation.reference_audio):
        raise InputError("messages", NO_INPUT)
    return ChatRequest(generation, _flag(body.get("stream"), "stream"), model or None)


def _last_user_turn(messages: list) -> tuple[str, list[str]]:
    """The text and the audio (as data URIs) of the last user message with content."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant", "developer"):
            raise InputError(f"messages[{index}]", f"messages[{index}] must be an object with a role (system, user "
                                                   "or assistant) and content")
        content = message.get("content")
        if message["role"] != "user" or not content:
            continue
        if isinstance(content, str):
            return content.strip(), []
        if not isinstance(content, list):
            raise InputError(f"messages[{index}].content", f"messages[{index}].content must be text or a list of "
                                                           "text and input_audio parts")
        texts, audio = [], []
        for number, part in enumerate(content):
            where = f"messages[{index}].content[{number}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"].strip())
            elif kind == "input_audio":
                audio.append(_audio_part(part.get("input_audio"), where))
            else:
                raise InputError(where, f"{where} must be a text part or an input_audio part; got {echo(part)}")
        return "\n".join(t for t in texts if t).strip(), audio
    return "", []


def _audio_part(value: Any, where: str) -> str:
    """An `input_audio` part's audio as a data URI (the form the audio sources read)."""
    if not isinstance(value, dict) or not isinstance(value.get("data"), str) or not value["data"].strip():
        raise InputError(where, f'{where}.input_audio must be {{"data": <base64 audio or a data URI>, '
                                '"format": "mp3"}')
    data = value["data"].strip()
    if data[:5].lower() == "data:":
        return data
    fmt = value.get("format") or "mp3"
    if not isinstance(fmt, str) or not re.fullmatch(r"[A-Za-z0-9.+-]{1,16}", fmt):
        raise InputError(where, f"{where}.input_audio.format must be an audio format name such as mp3 or wav")
    subtype = {"mp3": "mpeg"}.get(fmt.lower(), fmt.lower())
    return f"data:audio/{subtype};base64,{data}"


def _text_fields(text: str, body: dict) -> dict:
    """caption, lyrics and sample_query from the message text, as upstream assigns them."""
    given_lyrics = body.get("lyrics")
    if given_lyrics not in (None, "") and not isinstance(given_lyrics, str):
        raise InputError("lyrics", f"lyrics must be text; got {echo(given_lyrics)}")
    if _flag(body.get("sample_mode"), "sample_mode"):  # the whole message is the planner's description
        return {"sample_mode": True, "sample_query": text}
    caption, lyrics = _caption_and_lyrics(text)
    if given_lyrics:  # the message can only be the caption
        return {"caption": caption, "lyrics": given_lyrics}
    return {"caption": caption, "lyrics": lyrics}


def _caption_and_lyrics(text: str) -> tuple[str, str]:
    """Tags first; untagged text is the lyrics when it looks like lyrics, the caption otherwise."""
    prompt, lyrics = _tagged(text, "prompt"), _tagged(text, "lyrics")
    if prompt is not None or lyrics is not None:
        return prompt or _untagged(text), lyrics or ""
    return ("", text) if looks_like_lyrics(text) else (text, "")


def _tagged(text: str, tag: str) -> str | None:
    match = re.search(rf"<{tag}>(.*?)</{tag}>", text, re.DOTALL | re.IGNORECASE)
    return match.group(1).strip() if match else None


def _untagged(text: str) -> str:
    return re.sub(r"<(prompt|lyrics)>.*?</\1>", "", text, flags=re.DOTALL | re.IGNORECASE).strip()


def looks_like_lyrics(text: str) -> bool:
    """Upstream's guess: a section marker, or at least four non-empty lines averaging under 60 characters."""
    lowered = text.lower()
    if any(marker in lowered for marker in LYRIC_MARKERS):
        return True
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return len(lines) >= 4 and sum(map(len, lines)) / len(lines) < 60


def _sampling(body: dict) -> dict:
    """OpenAI's sampling names -> the planner's; a seed turns random seeds off, as upstream."""
    fields = {target: body[name] for name, target in (("temperature", "lm_temperature"), ("top_p", "lm_top_p"),
                                                      ("top_k", "lm_top_k")) if body.get(name) is not None}
    if body.get("seed") is not None:
        fields.update(seed=body["seed"], use_random_seed=False)
    return fields


def _route_audio(fields: dict, audio: list[str]) -> None:
    if not audio:
        return
    task = GenerationRequest.model_fields["task_type"]
    given = next((fields[alias] for alias in task.validation_alias.choices if fields.get(alias)), task.default)
    limit = 2 if str(given) in SOURCE_LED_TASKS else 1
    if len(audio) > limit:
        raise InputError("messages", f"the message carries {len(audio)} input_audio parts; this task takes at most "
                                     f"{limit} (a source{' and a reference' if limit == 2 else ''})")
    names = ("src_audio", "reference_audio") if limit == 2 else ("reference_audio",)
    for name, value in zip(names, audio):
        if any(fields.get(alias) for alias in GenerationRequest.model_fields[name].validation_alias.choices):
            raise InputError(name, f"{name} is given twice: as a field and as input_audio; send one")
        fields[name] = value


def _object(value: Any, field: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(field, f"{field} must be an object; got {echo(value)}")
    return value


def _flag(value: Any, field: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    raise InputError(field, f"{field} must be true or false; got {echo(value)}")


# -- the answer -----------------------------------------------------------------------------------

def summary(params: dict) -> str:
    """The message text: the song's metadata and lyrics in upstream's markdown."""
    lines = [f"**{label}:** {params[key]}{unit}" for key, label, unit in (
        ("caption", "Caption", ""), ("bpm", "BPM", ""), ("requested_duration", "Duration", "s"),
        ("key_scale", "Key", ""), ("time_signature", "Time Signature", ""), ("vocal_language", "Language", ""))
        if params.get(key) not in (None, "")]
    parts = ["## Metadata\n" + "\n".join(lines)] if lines else []
    lyrics = (params.get("lyrics") or "").strip()
    if lyrics and not params.get("instrumental"):
        parts.append(f"## Lyrics\n{lyrics}")
    return "\n\n".join(parts) or "Music generated successfully."


def audio_url(data: bytes, fmt: str) -> dict:
    """One song as upstream's `audio_url` item: a base64 data URL with the file's content type."""
    content_type = FORMATS[fmt].content_type if fmt in FORMATS else "application/octet-stream"
    return {"type": "audio_url", "audio_url": {"url": f"data:{content_type};base64,{base64.b64encode(data).decode()}"}}


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def completion(model_id: str, content: str, audio: list[dict]) -> dict:
    """The non-streamed answer (usage is all zeros: no tokens are billed). `audio_codes` is upstream's
    field for the planner's codes; this server does not return them (null)."""
    message = {"role": "assistant", "content": content, "audio": audio or None, "audio_codes": None}
    return {"id": completion_id(), "object": "chat.completion", "created": int(time.time()), "model": model_id,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}


@dataclass(frozen=True)
class ChunkWriter:
    """The server-sent events of one streamed answer, all under one id."""

    id: str
    model_id: str
    created: int

    @classmethod
    def start(cls, model_id: str) -> ChunkWriter:
        return cls(completion_id(), model_id, int(time.time()))

    def event(self, delta: dict, finish_reason: str | None = None) -> str:
        chunk = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model_id,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    DONE = "data: [DONE]\n\n"
