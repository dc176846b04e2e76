"""From a request and its resolved metadata to the songs to make: one `SongSpec` per seed (text,
metadata, length, instruction, code hints), and what a result reports of them.

Codes, the planner's or the request's own `audio_code_string`, lead the DiT as a cover does and set
a song's length, 5 latent frames per code, as upstream; otherwise a source task takes the source's
length and text2music the duration's.
"""

from __future__ import annotations

from ..models.dit.conditioning import MIN_FRAMES, frames_for_duration
from ..models.dit.model import DiTModel
from ..models.dit.text_prompts import COVER_INSTRUCTION, Metas, is_instrumental
from ..schema.request import GenerationRequest
from ..schema.task_types import given_codes, instruction_for
from .edit_conditions import EditInputs
from .planner_pass import Resolved
from .sampling_plan import codes_to_hints
from .synthesizer import SongSpec


def song_specs(dit: DiTModel, request: GenerationRequest, resolved: Resolved, seeds: list[int],
               edit: EditInputs) -> list[SongSpec]:
    """One spec per song. Codes (the planner's, or `audio_code_string`) make a text2music song a
    cover of them and set its length, 5 frames per code, whatever the duration says (given codes
    also replace the source song, see `Engine.generate`); a source task takes the source's length."""
    metas = Metas(bpm=resolved.bpm, time_signature=resolved.time_signature, key_scale=resolved.key_scale,
                  duration_s=edit.source.duration_s if edit.source else resolved.duration_s)
    codes_given = given_codes(request)
    instruction = instruction_for(request.task_type, request.track_name, request.track_classes,
                                  request.instruction)
    given_hints = codes_to_hints(dit, codes_given) if codes_given else None  # one for every song
    frames = frames_for_duration(resolved.duration_s)
    if edit.source is not None:
        frames = max(MIN_FRAMES, edit.source.latents.shape[0])
    specs = []
    for index, seed in enumerate(seeds):
        spec = SongSpec(caption=resolved.caption, lyrics=resolved.lyrics, language=resolved.language,
                        metas=metas, seed=seed, frames=frames, instruction=instruction)
        codes = codes_given or (resolved.codes[index] if resolved.codes is not None else None)
        if codes:
            # 5 latent frames per code; the DiT follows them as a cover does.
            spec.code_hints = given_hints if codes_given else codes_to_hints(dit, codes)
            spec.frames = spec.code_hints.shape[0]
            if request.task_type == "text2music" and not request.instruction:
                spec.instruction = COVER_INSTRUCTION
        specs.append(spec)
    return specs


def song_params(request: GenerationRequest, resolved: Resolved, songs: list[SongSpec], planner) -> dict:
    """What a result reports of the songs it made: the resolved text and metadata, seeds, the planner's part."""
    params = {"caption": resolved.caption, "lyrics": resolved.lyrics, "instrumental": is_instrumental(resolved.lyrics),
              "vocal_language": resolved.language, "bpm": resolved.bpm, "key_scale": resolved.key_scale,
              "time_signature": resolved.time_signature, "requested_duration": resolved.duration_s,
              "seeds": [s.seed for s in songs]}
    if planner is not None:
        params["planner"] = {"model": planner.name, "thinking": request.thinking,
                             "audio_codes": len(resolved.codes[0]) if resolved.codes else 0}
        params["lm_metadata"] = resolved.lm_metadata
    return params
