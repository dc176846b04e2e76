"""Every generation field, declared once, by group: its upstream names and aliases, the values it
accepts (in words, for error messages), its range and default, and, for a field upstream documents
but this server does not act on, why (`unused`).

`schema/request.py` puts the groups together into `GenerationRequest` and reads and checks them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field

from .formats import FORMATS, MP3_BITRATES_KBPS
from .lora_refs import LoraRef
from .task_types import INSTRUMENTAL, REPAINT_MODES, STEM_PRESETS, TASK_TYPES, TRACK_NAMES
from .units import MAX_DURATION_S, MIN_DURATION_S
from .values import MAX_SEED, MAX_TIMESTEPS

MAX_BATCH = 8
CAPTION_MAX_CHARS = 4_000
LYRICS_MAX_CHARS = 20_000
AUDIO_SOURCE_FORMS = ("an https URL, a data:audio/<type>;base64 URI, base64 audio, an s3://bucket/key object, "
                      "or (pod) an uploaded file or a file in the input folder")


def _field(default: Any, *aliases: str, allowed: str, unused: str | None = None, **constraints: Any) -> Any:
    """A field with its upstream aliases and a human description of its allowed values.

    `unused` marks a field upstream documents but this server does not act on, with the reason; a
    request that sends it is accepted and the reason is reported back (see `unused_fields`).
    """
    names = aliases
    extra = {"allowed": allowed} if unused is None else {"allowed": allowed, "unused": unused}
    return Field(default, validation_alias=AliasChoices(*names) if names else None,
                 json_schema_extra=extra, **constraints)


class SongFields(BaseModel):
    """The song, how it is sampled and written, and its model and adapters: what every generation reads."""

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
    model: str | None = _field(None, "model", "model_name", "modelName", "dit_model", "ditModel",
                               allowed="the name of an installed DiT model (see /v1/models)")
    loras: tuple[LoraRef, ...] | None = _field(
        None, "loras", allowed='a list of adapters such as [{"name": "my-style", "scale": 0.8}] (one of name, path, '
        'url or repo each, scale 0 to 2)')


class RetakeFields(BaseModel):
    """Retake (newest upstream): each song's starting noise n0 (from its seed) is blended with noise nr from a
    retake seed, cos(v*pi/2)*n0 + sin(v*pi/2)*nr, so that v = 0 keeps the song exactly and small v gives a
    nearby take. `use_random_seed` does not touch retake seeds (upstream resolves them apart)."""

    retake_seed: tuple[int, ...] | None = _field(
        None, "retake_seed", "retakeSeed", allowed=f"an integer from 0 to {MAX_SEED}, -1 for random, or a comma "
        "list with one retake seed per song")
    retake_variance: float = _field(0.0, "retake_variance", "retakeVariance",
                                    allowed="a number from 0 (no retake) to 1 (the retake seed's own song)",
                                    ge=0.0, le=1.0)


class FinishingFields(BaseModel):
    """Finishing, as upstream's GenerationParams (audio/finishing.py): each song's peak normalised to
    `normalization_db` dBFS (on by default upstream), then linear fades; the latents scaled and shifted just
    before the VAE decodes them. Upstream's /release_task does not read these (its songs get the defaults);
    every door here accepts them."""

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


class EditingFields(BaseModel):
    """Audio for the editing tasks: a source descriptor each (see audio/sources.py). The adapters fetch and
    decode them; the engine receives the decoded arrays."""

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


class FlowEditFields(BaseModel):
    """Flow-edit, upstream's "remix by flow-edit" (its issue #1156): the source song is moved from the source
    caption/lyrics toward this request's caption/lyrics by integrating the difference of the two velocities over
    a window of the schedule. Which tasks and models take it is data in task_types.py (FLOW_EDIT_FAMILIES,
    TaskRule.flow_edit); the step is models/dit/flow_edit.py."""

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


class SamplerFields(BaseModel):
    """Sampler options of newer upstream."""

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
        "euler", "sampler_mode", "samplerMode",
        allowed='"euler" or "heun" (Heun: a second DiT call per step corrects it; ODE steps only)')
    velocity_norm_threshold: float = _field(0.0, "velocity_norm_threshold", "velocityNormThreshold",
                                            allowed="a number from 0 (off) to 10", ge=0.0, le=10.0)
    velocity_ema_factor: float = _field(0.0, "velocity_ema_factor", "velocityEmaFactor",
                                        allowed="a number from 0 (off) to 1", ge=0.0, lt=1.0)


class PlannerFields(BaseModel):
    """The 5 Hz planner LM. `thinking`, `use_format` and the sample mode need it; the CoT options only use it
    when one is configured."""

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


class AlignmentFields(BaseModel):
    """Lyric timestamps and scores per song (issue #19), read from the DiT's cross-attention once the songs are
    made. auto_lrc / auto_score / score_scale are upstream's names (its Gradio page and GenerationParams);
    keep_best / rank_by are this server's own best-of-N (upstream has none)."""

    auto_lrc: bool = _field(False, "auto_lrc", "autoLrc", "return_lrc", "returnLrc", "get_lrc",
                            allowed="true to return each song's lyrics as LRC timestamps (needs lyrics)")
    auto_score: bool = _field(False, "auto_score", "autoScore", "get_scores", "getScores",
                              allowed="true to return each song's lyric-alignment scores lm_score and dit_score "
                              "(needs lyrics), and the PMI quality_score where a planner and audio codes are there")
    score_scale: float = _field(
        0.5, "score_scale", "scoreScale", "quality_score_sensitivity", allowed="a number from 0.01 to 10 (the "
        "PMI quality score's sensitivity: smaller spreads the scores further from 0.5)", ge=0.01, le=10.0)
    keep_best: int | None = _field(None, "keep_best", "keepBest",
                                   allowed="this server's best-of-N: an integer from 1 to batch_size, the songs to "
                                   "keep of batch_size takes ranked by rank_by", ge=1, le=MAX_BATCH)
    rank_by: Literal["dit_score", "lm_score", "quality_score"] = _field(
        "dit_score", "rank_by", "rankBy", allowed='"dit_score", "lm_score" or "quality_score" (the score keep_best '
        'ranks takes by; quality_score needs the planner LM and audio codes)')


class AnalysisFields(BaseModel):
    """What a job does instead of making songs (upstream's order decides when several are sent: codes, then the
    audio analysis, then the metadata analysis). None of them generates or writes audio."""

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


class UpstreamOnlyFields(BaseModel):
    """Upstream documents these; this server accepts them and says, with the reason, that it does not act on
    them (clients written for upstream send them routinely)."""

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
