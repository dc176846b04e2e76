"""Upstream's seven task types as one table: the only place that knows the per-task rules.

Each row says which inputs a task needs, the instruction line it writes into the caption prompt,
how its source latents and masks are built (as flags the builder reads, never task names), whether
the DiT follows FSQ hints of the source (a "cover"), whether upstream runs the planner LM for it, and
which model families support it. Plain data and pure functions, no torch: the request schema and
the HTTP client import it too.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ..errors import InputError
from .units import FRAMES_PER_SECOND, SAMPLE_RATE, latent_frames

# Upstream's track names (acestep/constants.py), in its order.
TRACK_NAMES = ("woodwinds", "brass", "fx", "synth", "strings", "percussion", "keyboard", "guitar", "bass",
               "drums", "backing_vocals", "vocals")

# A stem no checkpoint is trained to extract (upstream's list has no instrumental or accompaniment
# track): the source song minus its extracted vocals, in the waveform (see pipeline/stems.py).
INSTRUMENTAL = "instrumental"
DERIVED_STEMS = {INSTRUMENTAL: "vocals"}  # derived stem -> the extracted stem it is the source minus
STEM_PRESETS = {"vocals+instrumental": ("vocals", INSTRUMENTAL)}
STEM_NAMES = TRACK_NAMES + (INSTRUMENTAL,)

ALL_FAMILIES = ("turbo", "sft", "base")
BASE_ONLY = ("base",)  # extract, lego and complete need the base model (XL base included)
# Flow-edit runs on the guided models only: upstream's turbo model has no flow-edit sampler (its
# handler raises, naming xl_base, xl_sft, sft and base). XL models follow their size-less family.
FLOW_EDIT_FAMILIES = ("base", "sft")
FLOW_EDIT_FIELDS = ("flow_edit_morph", "flow_edit_source_caption", "flow_edit_source_lyrics", "flow_edit_n_min",
                    "flow_edit_n_max", "flow_edit_n_avg")


@dataclass(frozen=True)
class TaskRule:
    name: str
    instruction: str  # may hold {track} or {classes}
    instruction_without_track: str | None = None  # when no track name / classes are given
    needs_source: bool = False  # src_audio required
    uses_range: bool = False  # repainting_start/end select a region: chunk and repaint masks
    silences_range: bool = False  # the region of the source latents is replaced by silence
    follows_source_hints: bool = False  # cover: the DiT sees the FSQ round trip of the source
    runs_planner: bool = True  # upstream skips the LM for tasks that only transform a source
    families: tuple[str, ...] = ALL_FAMILIES
    flow_edit: bool = False  # flow_edit_morph applies (upstream: text2music with a source, cover, cover-nofsq)
    several_stems: bool = False  # track_name may list several stems, made in one job from one encode
    derived_stems: bool = False  # "instrumental" (source minus vocals) makes sense: the stems split the source


TASKS: dict[str, TaskRule] = {rule.name: rule for rule in (
    TaskRule("text2music", "Fill the audio semantic mask based on the given conditions:", flow_edit=True),
    TaskRule("cover", "Generate audio semantic tokens based on the given conditions:", needs_source=True,
             follows_source_hints=True, runs_planner=False, flow_edit=True),
    # cover-nofsq: the cover prompt, but the DiT sees the source latents themselves (no FSQ round trip).
    TaskRule("cover-nofsq", "Generate audio semantic tokens based on the given conditions:", needs_source=True,
             runs_planner=False, flow_edit=True),
    TaskRule("repaint", "Repaint the mask area based on the given conditions:", needs_source=True,
             uses_range=True, silences_range=True, runs_planner=False),
    TaskRule("extract", "Extract the {track} track from the audio:", "Extract the track from the audio:",
             needs_source=True, runs_planner=False, families=BASE_ONLY, several_stems=True, derived_stems=True),
    TaskRule("lego", "Generate the {track} track based on the audio context:",
             "Generate the track based on the audio context:", needs_source=True, uses_range=True,
             families=BASE_ONLY, several_stems=True),
    TaskRule("complete", "Complete the input track with {classes}:", "Complete the input track:",
             needs_source=True, families=BASE_ONLY),
)}
TASK_TYPES = tuple(TASKS)

REPAINT_MODES = ("balanced", "conservative", "aggressive")


def family_supports(task_type: str, family: str) -> bool:
    """XL models follow the rules of their size-less family (xl-base is a base model)."""
    return family.removeprefix("xl-") in TASKS[task_type].families


def supported_task_types(family: str) -> list[str]:
    return [name for name in TASK_TYPES if family_supports(name, family)]


def check_supported(task_type: str, model_name: str, family: str, installed: dict[str, str]) -> None:
    """Refuse a task the model cannot do, naming the installed models that can."""
    if family_supports(task_type, family):
        return
    able = [name for name, fam in installed.items() if family_supports(task_type, fam)]
    where = f"installed models that do: {', '.join(able)}" if able else "no installed model does (it needs a base model)"
    raise InputError("task_type", f"task_type {task_type!r} is not supported by {family} model {model_name!r}; "
                     f"{where}")


def flow_edits(request) -> bool:
    """Whether `request` runs flow-edit: asked for, on a task it applies to (elsewhere it is reported unused)."""
    return bool(request.flow_edit_morph) and TASKS[request.task_type].flow_edit


def check_flow_edit_supported(model_name: str, family: str, installed: dict[str, str]) -> None:
    """Refuse flow-edit on a model without it (turbo), naming the installed models that have it."""
    if family.removeprefix("xl-") in FLOW_EDIT_FAMILIES:
        return
    able = [name for name, fam in installed.items() if fam.removeprefix("xl-") in FLOW_EDIT_FAMILIES]
    where = f"installed models that do: {', '.join(able)}" if able else "no installed model does"
    raise InputError("flow_edit_morph", f"flow_edit_morph needs a base, sft or XL base/sft model; {family} model "
                     f"{model_name!r} has no flow-edit sampler ({where})")


def instruction_for(task_type: str, track_name: str | None = None, track_classes: tuple[str, ...] | None = None,
                    override: str | None = None) -> str:
    """The instruction line: the user's override, else the task's, with track names upper-cased."""
    if override and override.strip():
        text = override.strip()
    else:
        rule = TASKS[task_type]
        track = track_name.upper() if track_name else None
        classes = " | ".join(c.upper() for c in track_classes) if track_classes else None
        if ("{track}" in rule.instruction and track is None) or ("{classes}" in rule.instruction and classes is None):
            text = rule.instruction_without_track or rule.instruction
        else:
            text = rule.instruction.format(track=track, classes=classes)
    return text if text.endswith(":") else text + ":"


@dataclass(frozen=True)
class Region:
    """A repaint/lego range on a (padded) source, in latent frames and audio samples."""

    pad_left_samples: int  # silence added before the source (negative start)
    pad_right_samples: int  # silence added after it (end past the source: an extension)
    start_frame: int
    end_frame: int  # exclusive

    @property
    def start_sample(self) -> int:
        return self.start_frame * SAMPLE_RATE // FRAMES_PER_SECOND

    @property
    def end_sample(self) -> int:
        return self.end_frame * SAMPLE_RATE // FRAMES_PER_SECOND


def region_for(start_s: float, end_s: float | None, source_samples: int) -> Region:
    """Upstream's seconds -> frames rule for repaint and lego ranges.

    A missing or negative end means the end of the source. A negative start pads the source on
    the left and shifts the range with it; an end past the source pads on the right. Seconds
    become frames by floor(s * 25); the start is clamped to [0, T-1], the end to [start+1, T].
    """
    source_s = source_samples / SAMPLE_RATE
    end = source_s if end_s is None or end_s < 0 else end_s
    pad_left = max(0.0, -start_s)
    start, end = start_s + pad_left, end + pad_left
    pad_left_samples = int(round(pad_left * SAMPLE_RATE))
    total_samples = pad_left_samples + source_samples
    pad_right_samples = max(0, int(math.ceil(end * SAMPLE_RATE)) - total_samples)
    frames = latent_frames(total_samples + pad_right_samples)
    start_frame = min(max(int(start * FRAMES_PER_SECOND), 0), frames - 1)
    end_frame = min(max(int(end * FRAMES_PER_SECOND), start_frame + 1), frames)
    return Region(pad_left_samples, pad_right_samples, start_frame, end_frame)


def repaint_schedule(mode: str, strength: float) -> tuple[float, int]:
    """(injection ratio, latent crossfade frames) for a repaint mode, as upstream sets them."""
    if mode == "conservative":
        return 1.0, 25
    if mode == "aggressive":
        return 0.0, 0
    return 1.0 - strength, round(FRAMES_PER_SECOND * (1.0 - strength))


def reference_offsets(total_samples: int, piece: int, seed: int) -> list[int]:
    """Start samples of the three reference pieces (upstream: 10 s each) from the front, middle and
    back thirds of the (tiled) reference audio.

    Upstream draws them with an unseeded RNG; ours derive from the job's seed so a request is
    reproducible (our one deliberate difference from upstream here).
    """
    third = total_samples // 3
    rng = random.Random(seed)
    return [rng.randint(0, max(0, third - piece)), third + rng.randint(0, max(0, third - piece)),
            2 * third + rng.randint(0, max(0, total_samples - 2 * third - piece))]


def check_stems(task_type: str, stems: tuple[str, ...] | None, instruction: str | None = None) -> None:
    """Several stems, and the derived ones, only where the task's rule allows them; InputError naming
    track_name otherwise (or instruction, which would make every stem the same song)."""
    if not stems:
        return
    rule = TASKS[task_type]
    if len(stems) > 1 and instruction and instruction.strip():
        raise InputError("instruction", "instruction replaces the instruction line of every stem, so the stems "
                         f"in track_name ({', '.join(stems)}) would all be the same song; send one stem per "
                         "instruction, or no instruction")
    able = [name for name, r in TASKS.items() if r.several_stems]
    if len(stems) > 1 and not rule.several_stems:
        raise InputError("track_name", f"track_name lists {len(stems)} stems; only task_type {' and '.join(able)} "
                         f"make several stems in one job; send one track name for task_type {task_type!r}"
                         + (" (complete takes its tracks in track_classes)" if task_type == "complete" else ""))
    derived = [stem for stem in stems if stem in DERIVED_STEMS]
    if derived and not rule.derived_stems:
        makes = [name for name, r in TASKS.items() if r.derived_stems]
        raise InputError("track_name", f"track_name {derived[0]!r} is the source minus its {DERIVED_STEMS[derived[0]]} "
                         f"stem, which only task_type {' and '.join(makes)} separates; name a track from: "
                         + ", ".join(TRACK_NAMES))


def extracted_stems(stems: tuple[str, ...]) -> tuple[str, ...]:
    """The stems the DiT makes for `stems`: each named track once, and for a derived stem the track it
    is the source minus (the instrumental needs the vocals), in the order first needed."""
    needed = [DERIVED_STEMS.get(stem, stem) for stem in stems]
    return tuple(dict.fromkeys(needed))


# The planner's fields, which a task that only transforms a source ignores, as upstream skips the LM.
PLANNER_FIELDS = ("thinking", "use_format", "sample_mode", "sample_query", "use_cot_metas", "use_cot_caption",
                  "use_cot_language")


def replaced_fields(request) -> dict[str, str]:
    """Fields of `request` that another of its fields replaces, as upstream's rules do, with the
    reason: nothing fetches or uses them, and results report the ones that were sent as unused. A
    planner field counts only when it asks for something (`thinking: false` replaces nothing)."""
    replaced = {}
    task = TASKS[request.task_type]
    flow = flow_edits(request)
    if request.given_codes and flow and not task.needs_source:
        replaced["audio_code_string"] = ("flow_edit_morph edits the source song in src_audio; upstream drops the "
                                         "audio codes of a text2music flow-edit")
    elif request.given_codes:
        replaced["src_audio"] = "audio_code_string gives audio codes, which replace the source song, as upstream's do"
    replaced.update(_flow_edit_replaced(request, task, flow))
    if request.thinking and request.given_codes:
        replaced["thinking"] = "audio_code_string gives the audio codes; the planner writes none, as upstream"
    elif request.thinking and (task.needs_source or flow):
        led = "flow_edit_morph" if flow and not task.needs_source else f"task_type {request.task_type!r}"
        replaced["thinking"] = f"{led} follows the source song; the planner writes no audio codes for it, as upstream"
    if request.sampler_mode == "heun" and request.infer_method == "sde" and not flow:
        replaced["sampler_mode"] = "infer_method sde takes no Heun steps; upstream falls back to Euler, as we do"
    if request.retake_seed is not None and request.retake_variance == 0:
        replaced["retake_seed"] = "retake_variance is 0: no retake noise is mixed in, as upstream"
    if request.keep_best is None and "rank_by" in request.model_fields_set:
        replaced["rank_by"] = "rank_by orders the takes of best-of-N; without keep_best every song is kept"
    if not task.runs_planner:
        reason = (f"task_type {request.task_type!r} only transforms the source song; the planner does not run "
                  "for it, as upstream")
        replaced.update({name: reason for name in PLANNER_FIELDS if getattr(request, name)})
    return replaced


def _flow_edit_replaced(request, task: TaskRule, flow: bool) -> dict[str, str]:
    """The flow-edit fields a request cannot use, and what flow-edit itself leaves out, as upstream's
    flow-edit sampler does (Euler steps with APG; no DCW, ADG, cover switch or cover noise)."""
    sent = request.model_fields_set
    if not request.flow_edit_morph:
        return {name: "only used with flow_edit_morph: true" for name in FLOW_EDIT_FIELDS[1:] if name in sent}
    if not flow:
        reason = (f"upstream's flow-edit applies to text2music (with src_audio), cover and cover-nofsq, not "
                  f"{request.task_type!r}")
        return {name: reason for name in FLOW_EDIT_FIELDS if name in sent}
    left_out = "flow-edit starts from the source itself and keeps its conditions to the end, as upstream's"
    sampler = "upstream's flow-edit sampler takes Euler ODE steps guided by APG, without DCW"
    out = {"audio_cover_strength": left_out, "cover_noise_strength": left_out}
    if request.use_adg:
        out["use_adg"] = sampler
    if request.dcw_enabled:
        out["dcw_enabled"] = sampler
    if request.infer_method == "sde":
        out["infer_method"] = sampler
    if request.sampler_mode == "heun":
        out["sampler_mode"] = sampler
    return out
