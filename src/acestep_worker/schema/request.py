"""The one definition of every generation field: names, upstream aliases, types, ranges, defaults.

The Runpod handler, the HTTP API, the Gradio page and the CLI all parse into `GenerationRequest`
(or a subclass that adds delivery fields); none of them defines a field of its own. Upstream's
field names are the canonical ones where the seed contract does not say otherwise (`caption` and
`duration` are canonical here, `prompt` and `audio_duration` are accepted aliases).

`parse(data)` turns any failure into an `InputError` whose message is one sentence naming the field
and what it accepts.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Mapping

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..errors import InputError, echo
from . import values
from .formats import MP3_BITRATES_KBPS
from .lora_refs import parse_loras
from .request_fields import (
    AlignmentFields,
    AnalysisFields,
    EditingFields,
    FinishingFields,
    FlowEditFields,
    PlannerFields,
    RetakeFields,
    SamplerFields,
    SongFields,
    UpstreamOnlyFields,
    _field,
)
from .task_types import (
    STEM_NAMES,
    STEM_PRESETS,
    check_stems,
    replaced_fields,
)
from .units import MAX_DURATION_S, MIN_DURATION_S
from .values import check_shape, is_instrumental, parse_audio_codes

# How the values users send are read, per field (values.py; a ValueError becomes a sentence
# naming the field): "before" sees the raw value, "after" the value of the field's type.
READ_BEFORE = {"seed": values.seeds, "retake_seed": values.seeds, "timesteps": values.timesteps,
               "track_classes": values.track_list, "loras": parse_loras}
READ_AFTER = {"key_scale": values.key_scale, "time_signature": values.time_signature,
              "vocal_language": values.language, "audio_code_string": values.audio_codes}


class GenerationRequest(UpstreamOnlyFields, AnalysisFields, AlignmentFields, PlannerFields, SamplerFields,
                        FlowEditFields, EditingFields, FinishingFields, RetakeFields, SongFields):
    """What a user may ask of one generation call. Omitted sampling values come from the model.

    The fields are declared by group in request_fields.py (pydantic lists them base first: the song's
    fields, then retake, finishing, editing, ... and the upstream-only ones last); how they are read and
    checked together is here."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False,
                              coerce_numbers_to_str=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _one_name_per_field(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise InputError("request", "the request must be a JSON object")
        known = set()
        for name, field in cls.model_fields.items():
            choices = getattr(field.validation_alias, "choices", None) or [name]
            known.update(choices)
            present = [alias for alias in choices if alias in data and data[alias] is not None]
            if len(present) > 1:
                raise InputError(name, f"{' and '.join(present)} name the same field; send only one")
        # `null` means "the default" for every field, in one place; unknown names stay to be refused.
        return {key: value for key, value in data.items() if value is not None or key not in known}

    @field_validator("lm_top_k", mode="after")
    @classmethod
    def _top_k(cls, value: int) -> int:
        return max(0, value)  # upstream: zero or negative switches top-k off

    @field_validator("lm_top_p", mode="after")
    @classmethod
    def _top_p(cls, value: float) -> float:
        return min(1.0, value)  # upstream: 1 or more switches top-p off

    @field_validator(*READ_BEFORE, mode="before")
    @classmethod
    def _read_before(cls, value: Any, info: ValidationInfo) -> Any:
        return READ_BEFORE[info.field_name](value)

    @field_validator(*READ_AFTER, mode="after")
    @classmethod
    def _read_after(cls, value: Any, info: ValidationInfo) -> Any:
        return READ_AFTER[info.field_name](value)

    @field_validator("track_name", mode="before")
    @classmethod
    def _track_name(cls, value: Any) -> Any:
        return values.stem_list(value, STEM_NAMES, STEM_PRESETS)

    @field_validator("duration", mode="after")
    @classmethod
    def _duration(cls, value: float | None) -> float | None:
        if value is None or value <= 0:
            return None  # upstream: zero or negative means "choose for me"
        if not MIN_DURATION_S <= value <= MAX_DURATION_S:
            raise ValueError("out of range")
        return value

    @field_validator("src_audio", "reference_audio", mode="after")
    @classmethod
    def _audio_source(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("mp3_bitrate", mode="after")
    @classmethod
    def _bitrate(cls, value: int) -> int:
        if value not in MP3_BITRATES_KBPS:
            raise ValueError("not an MP3 bitrate")
        return value

    @model_validator(mode="after")
    def _interval(self) -> "GenerationRequest":
        if self.cfg_interval_start > self.cfg_interval_end:
            raise InputError("cfg_interval_start", "cfg_interval_start must not exceed cfg_interval_end "
                             f"(got {self.cfg_interval_start:g} > {self.cfg_interval_end:g})")
        end = self.repainting_end
        if end is not None and end >= 0 and end <= self.repainting_start:
            raise InputError("repainting_end", f"repainting_end ({end:g} s) must come after repainting_start "
                             f"({self.repainting_start:g} s); use -1 for the end of the source")
        if self.flow_edit_n_min > self.flow_edit_n_max:
            raise InputError("flow_edit_n_min", "flow_edit_n_min must not exceed flow_edit_n_max "
                             f"(got {self.flow_edit_n_min:g} > {self.flow_edit_n_max:g})")
        check_stems(self.task_type, self.track_name, self.instruction)
        if self.keep_best is not None and self.keep_best > self.batch_size:
            raise InputError("keep_best", f"keep_best ({self.keep_best}) must not exceed batch_size "
                             f"({self.batch_size}): it keeps the best of batch_size takes")
        for name in ("seed", "retake_seed"):
            given = getattr(self, name)
            if given is not None and len(given) > 1 and len(given) != self.batch_size:
                raise InputError(name, f"{name} lists {len(given)} seeds but batch_size is {self.batch_size}; "
                                 "give one seed, or one per song")
        return self

    @cached_property
    def given_codes(self) -> tuple[int, ...]:
        """The audio codes `audio_code_string` holds, parsed once per request (empty: none given).
        Requests are frozen; a `model_copy` that changed `audio_code_string` would carry this stale,
        and none is made."""
        return tuple(parse_audio_codes(self.audio_code_string))

    @property
    def instrumental(self) -> bool:
        return is_instrumental(self.lyrics)

    @property
    def stems(self) -> tuple[str, ...]:
        """The stems track_name asks for, in its order (empty: none named)."""
        return self.track_name or ()

    @property
    def alignment_fields(self) -> tuple[str, ...]:
        """The fields of this request that read the DiT's lyric alignment."""
        return tuple(name for name, on in (("auto_lrc", self.auto_lrc), ("auto_score", self.auto_score),
                                           ("keep_best", self.keep_best is not None)) if on)


def field_names(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def unused_fields(request: BaseModel, replaced: Mapping[str, str] | None = None) -> dict[str, str]:
    """The fields this request sent that the server accepts but does not act on, with the reasons:
    always (the field's `unused`), or because another field of the request replaces it (`replaced`,
    the job's plan's when it has one)."""
    replaced = replaced_fields(request) if replaced is None else replaced
    reasons = {}
    for name in sorted(request.model_fields_set):
        reason = replaced.get(name) or (type(request).model_fields[name].json_schema_extra or {}).get("unused")
        if reason:
            reasons[name] = reason
    return reasons


def _describe(model: type[BaseModel], error: dict) -> InputError:
    loc = [part for part in error.get("loc", ()) if isinstance(part, str)]
    name = loc[0] if loc else "request"
    if error["type"] == "extra_forbidden":
        accepted = ", ".join(field_names(model))
        return InputError(name, f"unknown field {echo(name)}; accepted fields are: {accepted}")
    field = _lookup(model, name)
    context = error.get("ctx") or {}
    if isinstance(context.get("error"), InputError):
        return context["error"]
    allowed = (field.json_schema_extra or {}).get("allowed") if field else None
    shown = echo(error.get("input"))
    if allowed:
        return InputError(name, f"{name} must be {allowed}; got {shown}")
    return InputError(name, f"{name} is invalid: {error.get('msg', 'bad value')}; got {shown}")


def _lookup(model: type[BaseModel], name: str):
    if name in model.model_fields:
        return model.model_fields[name]
    for field in model.model_fields.values():
        if name in (getattr(field.validation_alias, "choices", None) or ()):
            return field
    return None


def parse(data: Any, model: type[GenerationRequest] = GenerationRequest) -> GenerationRequest:
    """Validate a raw request dict; raise `InputError` with one sentence about the first problem."""
    check_shape(data)
    try:
        return model.model_validate(data)
    except InputError:
        raise
    except ValidationError as exc:
        errors = exc.errors()
        extra = [e for e in errors if e["type"] == "extra_forbidden"]
        if len(extra) > 1:
            names = ", ".join(echo(e["loc"][0], 30) for e in extra[:5]) + (", ..." if len(extra) > 5 else "")
            raise InputError(str(extra[0]["loc"][0]), f"unknown fields {names}; accepted fields are: "
                             f"{', '.join(field_names(model))}") from None
        raise _describe(model, errors[0]) from None


MAX_INLINE_BASE64_BYTES = 15_000_000  # leaves room for the JSON envelope under /runsync's 20 MB


DEFAULT_TIMEOUT_S = 1800.0


class TimedRequest(GenerationRequest):
    """A generation with a deadline: a pod task (`/release_task`) or, extended below, a serverless job."""

    timeout_seconds: float = _field(DEFAULT_TIMEOUT_S, "timeout_seconds", "timeoutSeconds",
                                    allowed="seconds from 1 to 86400", ge=1.0, le=86_400.0)


class JobRequest(TimedRequest):
    """A serverless job: the generation fields plus how the job is run and delivered."""

    poll_interval: float = _field(3.0, "poll_interval", "pollInterval",
                                  allowed="seconds between progress updates, from 0.5 to 300", ge=0.5, le=300.0)
    return_audio_base64: bool = _field(False, "return_audio_base64", "returnAudioBase64", allowed="true or false")
    max_base64_bytes: int = _field(8_000_000, "max_base64_bytes", "maxBase64Bytes",
                                   allowed=f"an integer from 0 to {MAX_INLINE_BASE64_BYTES}",
                                   ge=0, le=MAX_INLINE_BASE64_BYTES)
