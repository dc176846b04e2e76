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
from typing import Any, Literal, Mapping

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..errors import InputError, echo
from . import values
from .formats import FORMATS, MP3_BITRATES_KBPS
from .lora_refs import LoraRef, parse_loras
from .task_types import (
    INSTRUMENTAL,
    REPAINT_MODES,
    STEM_NAMES,
    STEM_PRESETS,
    TASK_TYPES,
    TRACK_NAMES,
    check_stems,
    replaced_fields,
)
from .units import MAX_DURATION_S, MIN_DURATION_S
from .values import MAX_SEED, MAX_TIMESTEPS, check_shape, is_instrumental, parse_audio_codes

MAX_BATCH = 8
CAPTION_MAX_CHARS = 4_000
LYRICS_MAX_CHARS = 20_000
AUDIO_SOURCE_FORMS = ("an https URL, a data:audio/<type>;base64 URI, base64 audio, an s3://bucket/key object, "
                      "or (pod) an uploaded file or a file in the input folder")

# How the values users send are read, per field (values.py; a ValueError becomes a sentence
# naming the field): "before" sees the raw value, "after" the value of the field's type.
READ_BEFORE = {"seed": values.seeds, "retake_seed": values.seeds, "timesteps": values.timesteps,
               "track_classes": values.track_list, "loras": parse_loras}
READ_AFTER = {"key_scale": values.key_scale, "time_signature": values.time_signature,
              "vocal_language": values.language, "audio_code_string": values.audio_codes}


def _field(default: Any, *aliases: str, allowed: str, unused: str | None = None, **constraints: Any) -> Any:
    """A field with its upstream aliases and a human description of its allowed values.

    `unused` marks a field upstream documents but this server does not act on, with the reason; a
    request that sends it is accepted and the reason is reported back (see `unused_fields`).
    """
    names = aliases
    extra = {"allowed": allowed} if unused is None else {"allowed": allowed, "unused": unused}
    return Field(default, validation_alias=AliasChoices(*names) if names else None,
                 json_schema_extra=extra, **constraints)


class GenerationRequest(BaseModel):
    """What a user may ask of one generation call. Omitted sampling values come from the model."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False,
                              coerce_numbers_to_str=True, frozen=True)

    caption: str = _field("", "caption", "prompt", allowed=f"text of at most {CAPTION_MAX_CHARS} characters",
                          max_length=CAPTION_MAX_CHARS)
    lyrics: str = _field("", "lyrics", allowed=f"text of at most {LYRICS_MAX_CHARS} characters; empty or "
                         "[inst] for an instrumental", max_length=LYRICS_MAX_CHARS)
    duration: float | None = _field(
        None, "duration", "audio_duration", "audioDuration", "target_duration", "targetDuration",
        allowed=f"seconds between {MIN_DURATION_S:g} and {MAX_DURATION_S:g} (0 or negative: automatic)")
    batch_size: int = _field(1, "batch_size", "batchSize", allowed=f"an integer from 1 to {MAX_BATCH}",
                             ge=1, le=MAX_BATCH)
    seed: tuple[int, ...] | None = _field(
        None, "seed", allowed=f"an integer from 0 to {MAX_SEED}, -1 for random, or a comma list with one "
        "seed per song")
    use_random_seed: bool | None = _field(None, "use_random_seed", "useRandomSeed",
                                          allowed="true to ignore `seed` and draw random seeds")
    # Retake (newest upstream): each song's starting noise n0 (from its seed) is blended with noise nr
    # from a retake seed, cos(v*pi/2)*n0 + sin(v*pi/2)*nr, so that v = 0 keeps the song exactly and small
    # v gives a nearby take. `use_random_seed` does not touch retake seeds (upstream resolves them apart).
    retake_seed: tuple[int, ...] | None = _field(
        None, "retake_seed", "retakeSeed", allowed=f"an integer from 0 to {MAX_SEED}, -1 for random, or a comma "
        "list with one retake seed per song")
    retake_variance: float = _field(0.0, "retake_variance", "retakeVariance",
                                    allowed="a number from 0 (no retake) to 1 (the retake seed's own song)",
                                    ge=0.0, le=1.0)
    inference_steps: int | None = _field(None, "inference_steps", "inferenceSteps",
                                         allowed="an integer within the model's step range", ge=1, le=200)
    guidance_scale: float | None = _field(None, "guidance_scale", "guidanceScale",
                                          allowed="a number from 1 to 15", ge=1.0, le=15.0)
    shift: float | None = _field(None, "shift", allowed="a number from 1 to 5", ge=1.0, le=5.0)
    timesteps: tuple[float, ...] | None = _field(
        None, "timesteps", allowed=f"a list (or comma string) of 1 to {MAX_TIMESTEPS} strictly descending times in "
        "(0, 1], optionally followed by the final 0")
    use_adg: bool = _field(False, "use_adg", "useAdg", allowed="true or false")
    cfg_interval_start: float = _field(0.0, "cfg_interval_start", "cfgIntervalStart",
                                       allowed="a number from 0 to 1", ge=0.0, le=1.0)
    cfg_interval_end: float = _field(1.0, "cfg_interval_end", "cfgIntervalEnd",
                                     allowed="a number from 0 to 1", ge=0.0, le=1.0)
    bpm: int | None = _field(None, "bpm", allowed="an integer from 30 to 300", ge=30, le=300)
    key_scale: str | None = _field(None, "key_scale", "keyscale", "keyScale", "key",
                                   allowed='a key such as "C major" or "F# minor"')
    time_signature: str | None = _field(None, "time_signature", "timesignature", "timeSignature",
                                        allowed="2, 3, 4 or 6 (beats per bar; 4/4 and 6/8 are accepted)")
    vocal_language: str | None = _field(None, "vocal_language", "vocalLanguage", "language",
                                        allowed="an ISO 639 code such as en, zh, ja, or unknown")
    audio_format: Literal[tuple(FORMATS)] = _field(  # the format table is the one list
        "mp3", "audio_format", "audioFormat", allowed="one of " + ", ".join(FORMATS))
    mp3_bitrate: int = _field(192, "mp3_bitrate", "mp3Bitrate",
                              allowed="an MP3 bitrate in kbps: " + ", ".join(map(str, MP3_BITRATES_KBPS)))
    # Finishing, as upstream's GenerationParams (audio/finishing.py): each song's peak normalised to
    # `normalization_db` dBFS (on by default upstream), then linear fades; the latents scaled and
    # shifted just before the VAE decodes them. Upstream's /release_task does not read these (its
    # songs get the defaults); every door here accepts them.
    enable_normalization: bool = _field(True, "enable_normalization", "enableNormalization",
                                        allowed="true (peak-normalise each song, upstream's default) or false")
    normalization_db: float = _field(-1.0, "normalization_db", "normalizationDb",
                                     allowed="a peak level in dBFS from -60 to 0", ge=-60.0, le=0.0)
    fade_in_duration: float = _field(0.0, "fade_in_duration", "fadeInDuration",
                                     allowed=f"seconds from 0 (none) to {MAX_DURATION_S:g}", ge=0.0,
                                     le=MAX_DURATION_S)
    fade_out_duration: float = _field(0.0, "fade_out_duration", "fadeOutDuration",
                                      allowed=f"seconds from 0 (none) to {MAX_DURATION_S:g}", ge=0.0,
                                      le=MAX_DURATION_S)
    latent_shift: float = _field(0.0, "latent_shift", "latentShift",
                                 allowed="a number from -2 to 2 added to the latents before decoding (0: none)",
                                 ge=-2.0, le=2.0)
    latent_rescale: float = _field(1.0, "latent_rescale", "latentRescale",
                                   allowed="a number above 0 and at most 3 multiplying the latents before "
                                   "decoding (1: none)", gt=0.0, le=3.0)
    model: str | None = _field(None, "model", "model_name", "modelName", "dit_model", "ditModel",
                               allowed="the name of an installed DiT model (see /v1/models)")
    # Audio for the editing tasks: a source descriptor each (see audio/sources.py). The adapters
    # fetch and decode them; the engine receives the decoded arrays.
    src_audio: str | None = _field(
        None, "src_audio", "srcAudio", "src_audio_path", "srcAudioPath", "src_audio_url", "srcAudioUrl",
        "ctx_audio", "ctx_audio_path", "ctxAudioPath", "source_audio", "sourceAudio", "sourceAudioPath",
        allowed=f"the song to edit: {AUDIO_SOURCE_FORMS}")
    reference_audio: str | None = _field(
        None, "reference_audio", "referenceAudio", "reference_audio_path", "referenceAudioPath",
        "reference_audio_url", "ref_audio", "refAudio", "ref_audio_path", "refAudioPath", "ref_audio_url",
        allowed=f"audio whose timbre steers the song: {AUDIO_SOURCE_FORMS}")
    task_type: Literal[TASK_TYPES] = _field("text2music", "task_type", "taskType",  # type: ignore[valid-type]
                                            allowed="one of " + ", ".join(TASK_TYPES))

    # Editing tasks: how the source and reference above are used.
    repainting_start: float = _field(0.0, "repainting_start", "repaintingStart", "repaint_start",
                                     allowed="seconds (negative: pad the source on the left)", ge=-600.0, le=600.0)
    repainting_end: float | None = _field(None, "repainting_end", "repaintingEnd", "repaint_end",
                                          allowed="seconds after repainting_start, or -1 / null for the end of "
                                          "the source (past the end: extend the song)", ge=-1.0, le=1200.0)
    audio_cover_strength: float = _field(1.0, "audio_cover_strength", "audioCoverStrength", "cover_strength",
                                         allowed="a number from 0 to 1 (share of steps that follow the source)",
                                         ge=0.0, le=1.0)
    cover_noise_strength: float = _field(0.0, "cover_noise_strength", "coverNoiseStrength",
                                         allowed="a number from 0 to 1 (start from the noised source)",
                                         ge=0.0, le=1.0)
    # Flow-edit, upstream's "remix by flow-edit" (its issue #1156): the source song is moved from the
    # source caption/lyrics toward this request's caption/lyrics by integrating the difference of the
    # two velocities over a window of the schedule. Which tasks and models take it is data in
    # task_types.py (FLOW_EDIT_FAMILIES, TaskRule.flow_edit); the step is models/dit/flow_edit.py.
    flow_edit_morph: bool = _field(False, "flow_edit_morph", "flowEditMorph",
                                   allowed="true or false (true: edit src_audio by flow-edit; base, sft and XL models)")
    flow_edit_source_caption: str = _field(
        "", "flow_edit_source_caption", "flowEditSourceCaption",
        allowed=f"text of at most {CAPTION_MAX_CHARS} characters describing the source song",
        max_length=CAPTION_MAX_CHARS)
    flow_edit_source_lyrics: str = _field(
        "", "flow_edit_source_lyrics", "flowEditSourceLyrics",
        allowed=f"text of at most {LYRICS_MAX_CHARS} characters: the source song's lyrics", max_length=LYRICS_MAX_CHARS)
    flow_edit_n_min: float = _field(0.0, "flow_edit_n_min", "flowEditNMin",
                                    allowed="a number from 0 to 1 (share of the first steps left out of the edit)",
                                    ge=0.0, le=1.0)
    flow_edit_n_max: float = _field(1.0, "flow_edit_n_max", "flowEditNMax",
                                    allowed="a number from 0 to 1, at least flow_edit_n_min (where the edit ends; "
                                    "the rest denoises toward the target)", ge=0.0, le=1.0)
    flow_edit_n_avg: int = _field(1, "flow_edit_n_avg", "flowEditNAvg",
                                  allowed="an integer from 1 to 8 (noise samples averaged per edit step)", ge=1, le=8)
    # One stem (upstream's single name), or several from one job (extract, lego): held as a tuple.
    track_name: tuple[str, ...] | None = _field(
        None, "track_name", "trackName",
        allowed="one of " + ", ".join(TRACK_NAMES) + ", or (extract, lego) a list or comma string of them; "
        f"extract also takes {INSTRUMENTAL} (the source minus the vocals) and the preset "
        + ", ".join(STEM_PRESETS))
    track_classes: tuple[Literal[TRACK_NAMES], ...] | None = _field(  # type: ignore[valid-type]
        None, "track_classes", "trackClasses", "complete_track_classes", "completeTrackClasses",
        allowed="a list (or comma string) of track names: " + ", ".join(TRACK_NAMES))
    audio_code_string: str = _field("", "audio_code_string", "audioCodeString", "audio_codes", "audioCodes",
                                    allowed="5 Hz audio codes such as <|audio_code_123|><|audio_code_7|> "
                                            "(or whole numbers), or empty for none",
                                    max_length=200_000)
    instruction: str | None = _field(None, "instruction", allowed="text of at most 500 characters", max_length=500)
    chunk_mask_mode: Literal["auto", "explicit"] = _field(
        "auto", "chunk_mask_mode", "chunkMaskMode",
        allowed='"auto" (upstream\'s default: the model sees no region mask) or "explicit"')
    repaint_mode: Literal[REPAINT_MODES] = _field(  # type: ignore[valid-type]
        "balanced", "repaint_mode", "repaintMode", allowed="one of " + ", ".join(REPAINT_MODES))
    repaint_strength: float = _field(0.5, "repaint_strength", "repaintStrength",
                                     allowed="a number from 0 to 1 (balanced mode)", ge=0.0, le=1.0)
    repaint_latent_crossfade_frames: int | None = _field(
        None, "repaint_latent_crossfade_frames", "repaintLatentCrossfadeFrames",
        allowed="latent frames from 0 to 250 (default: set by repaint_mode)", ge=0, le=250)
    repaint_wav_crossfade_sec: float = _field(0.0, "repaint_wav_crossfade_sec", "repaintWavCrossfadeSec",
                                              allowed="seconds from 0 (hard cut) to 20", ge=0.0, le=20.0)

    # Sampler options of newer upstream.
    infer_method: Literal["ode", "sde"] = _field("ode", "infer_method", "inferMethod", allowed='"ode" or "sde"')
    dcw_enabled: bool | None = _field(None, "dcw_enabled", "dcwEnabled",
                                      allowed="true or false (default: on for turbo models, off otherwise)")
    dcw_mode: Literal["low", "high", "double", "pix"] = _field("double", "dcw_mode", "dcwMode",
                                                                allowed="low, high, double or pix")
    dcw_scaler: float = _field(0.05, "dcw_scaler", "dcwScaler", allowed="a number from 0 to 1", ge=0.0, le=1.0)
    dcw_high_scaler: float = _field(0.02, "dcw_high_scaler", "dcwHighScaler", allowed="a number from 0 to 1",
                                    ge=0.0, le=1.0)
    dcw_wavelet: Literal["haar"] = _field("haar", "dcw_wavelet", "dcwWavelet",
                                          allowed='"haar" (the one wavelet this server implements)')
    sampler_mode: Literal["euler", "heun"] = _field(
        "euler", "sampler_mode", "samplerMode", allowed='"euler" or "heun"',
        unused="this server takes Euler steps only; heun is accepted and sampled with Euler")
    velocity_norm_threshold: float = _field(0.0, "velocity_norm_threshold", "velocityNormThreshold",
                                            allowed="a number from 0 (off) to 10", ge=0.0, le=10.0)
    velocity_ema_factor: float = _field(0.0, "velocity_ema_factor", "velocityEmaFactor",
                                        allowed="a number from 0 (off) to 1", ge=0.0, lt=1.0)

    # The 5 Hz planner LM. `thinking`, `use_format` and the sample mode need it; the CoT options
    # only use it when one is configured.
    thinking: bool = _field(False, "thinking", allowed="true to let the planner write audio codes for the DiT")
    use_format: bool = _field(False, "use_format", "useFormat", "format",
                              allowed="true to let the planner rewrite caption and lyrics first")
    sample_mode: bool = _field(False, "sample_mode", "sampleMode",
                               allowed="true to let the planner invent caption, lyrics and metadata")
    sample_query: str = _field("", "sample_query", "sampleQuery", "description", "desc",
                               allowed="a description of at most 2000 characters", max_length=2000)
    use_cot_metas: bool = _field(True, "use_cot_metas", "useCotMetas", "cot_metas",
                                 allowed="true or false: let the planner fill bpm, key, time signature, duration")
    use_cot_caption: bool = _field(True, "use_cot_caption", "useCotCaption", "cot_caption", "cot-caption",
                                   allowed="true or false: let the planner rewrite the caption for the DiT")
    use_cot_language: bool = _field(True, "use_cot_language", "useCotLanguage", "cot_language", "cot-language",
                                    allowed="true or false: let the planner detect the vocal language")
    lm_temperature: float = _field(0.85, "lm_temperature", "lmTemperature", allowed="a number from 0 to 2",
                                   ge=0.0, le=2.0)
    lm_cfg_scale: float = _field(2.0, "lm_cfg_scale", "lmCfgScale", allowed="a number from 1 to 5", ge=1.0, le=5.0)
    lm_top_k: int = _field(0, "lm_top_k", "lmTopK", allowed="an integer up to 1000 (0 or negative: off)", le=1000)
    lm_top_p: float = _field(0.9, "lm_top_p", "lmTopP", allowed="a number above 0 (1 or more: off)", gt=0.0)
    lm_negative_prompt: str = _field("NO USER INPUT", "lm_negative_prompt", "lmNegativePrompt",
                                     allowed="text of at most 2000 characters", max_length=2000)
    lm_repetition_penalty: float = _field(
        1.0, "lm_repetition_penalty", "lmRepetitionPenalty", ge=0.1, le=5.0,
        allowed="a number from 0.1 to 5 (1: off): the planner's logits for tokens already in its prompt or output "
        "are divided by it (multiplied when negative)")
    constrained_decoding: bool = _field(
        True, "constrained_decoding", "constrainedDecoding", "constrained",
        allowed="true or false: false lets the planner write its metadata and codes without constraints")

    loras: tuple[LoraRef, ...] | None = _field(
        None, "loras", allowed='a list of adapters such as [{"name": "my-style", "scale": 0.8}] (one of name, path, '
        'url or repo each, scale 0 to 2)')

    # What a job does instead of making songs (upstream's order decides when several are sent: codes,
    # then the audio analysis, then the metadata analysis). None of them generates or writes audio.
    extract_codes_only: bool = _field(
        False, "extract_codes_only", "extractCodesOnly",
        allowed="true to return the 5 Hz audio codes of src_audio (VAE, then the audio tokenizer) and no audio")
    full_analysis_only: bool = _field(
        False, "full_analysis_only", "fullAnalysisOnly",
        allowed="true to have the planner describe src_audio from its audio codes (bpm, key, time signature, "
        "duration, genre, language, caption, lyrics) and make no audio; needs a planner")
    analysis_only: bool = _field(
        False, "analysis_only", "analysisOnly",
        allowed="true to run only the planner's metadata pass over caption and lyrics (bpm, key, duration, "
        "caption) and make no audio; needs a planner")

    # Upstream documents these; this server accepts them and says, with the reason, that it does not
    # act on them (clients written for upstream send them routinely).
    lm_model_path: str = _field(
        "", "lm_model_path", "lmModelPath", allowed="a 5 Hz LM folder name", max_length=500,
        unused="the planner LM is chosen when the server starts (ACESTEP_LM_MODEL_PATH) or with POST /v1/init, "
        "not per request")
    lm_backend: Literal["vllm", "pt", "mlx"] = _field(
        "vllm", "lm_backend", "lmBackend", allowed="vllm, pt or mlx",
        unused="this server has one LM backend (PyTorch transformers with a static KV cache)")
    constrained_decoding_debug: bool = _field(
        False, "constrained_decoding_debug", "constrainedDecodingDebug", allowed="true or false",
        unused="there is no constrained-decoding debug log")
    allow_lm_batch: bool = _field(
        True, "allow_lm_batch", "allowLmBatch", "parallel_thinking", allowed="true or false",
        unused="the planner always writes a batch's audio codes in one batched pass")
    is_format_caption: bool = _field(
        False, "is_format_caption", "isFormatCaption", allowed="true or false",
        unused="captions are used as given unless use_format asks the planner to rewrite them")
    use_tiled_decode: bool = _field(
        True, "use_tiled_decode", "useTiledDecode", allowed="true or false",
        unused="the VAE decoder chooses its own memory strategy")
    global_caption: str = _field(
        "", "global_caption", "globalCaption", allowed="text of at most 4000 characters", max_length=4000,
        unused="only upstream's SFT-stems lego models read a separate song-level caption")
    guidance_variant: str = _field(
        "apg_classic", "guidance_variant", "guidanceVariant", allowed="a guidance variant name", max_length=100,
        unused="base models are guided with upstream's classic APG (or ADG when use_adg is true)")
    guidance_params: dict | str = _field(
        "", "guidance_params", "guidanceParams", allowed="an object (or its JSON text)",
        unused="the guidance has no tunable parameters beyond guidance_scale and the CFG interval")

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
