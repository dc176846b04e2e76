"""The Gradio page: a form over the same request schema, submitting to the same task queue.

Every control maps to one request field by name; the page builds a dict and the schema validates
it, so its ranges, defaults and error sentences are the API's. Two ways in: Custom (caption and
lyrics, with a planner button that tidies them) and Simple (a description the planner turns into
a song). Progress is Gradio's progress bar (queue position, then stage, percent and time left); Stop
cancels this browser session's task in the queue or at its next step.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gradio as gr

from ....errors import AceStepError
from ....models.variants import BASE, TURBO
from ....pipeline import planner_services
from ....schema.formats import FORMATS
from ....schema.job_modes import MODE_NEEDS_PLANNER
from ....schema.messages import needs_planner
from ....schema.request import parse
from ....schema.request_fields import MAX_BATCH
from ....schema.values import LANGUAGES
from ..queue import QueueFull, Task, TaskManager, TaskState
from .edit_controls import EditingControls, editing_controls, optional_text
from .inputs import STARTING_VALUES as START
from .inputs import named, ordered
from .lora_controls import LoraControls, lora_controls

if TYPE_CHECKING:
    from ....pipeline.engine import Engine

MAX_PLAYERS = MAX_BATCH
ANALYSIS_CHOICES = [("Generate songs", ""), ("Extract the source's audio codes", "extract_codes_only"),
                    ("Analyze the source song (planner)", "full_analysis_only"),
                    ("Analyze caption and lyrics (planner metadata)", "analysis_only")]
POLL_S = 0.5
CAPTION_HINT = ("Describe the sound, not the story: genre, mood, instruments, vocals, tempo, production. "
                "e.g. \"dreamy lofi hip hop, rhodes piano, vinyl crackle, soft female vocals\"")
LYRICS_HINT = ("One tag per section, then its lines: [Intro] [Verse] [Pre-Chorus] [Chorus] [Bridge] [Outro]. "
               "Empty or [inst] for an instrumental.")
DESCRIPTION_HINT = ("One or two sentences; the planner writes the caption, the lyrics, tempo and key. "
                    "Name a language or say \"instrumental\" if you want one.")


def model_defaults(family: str) -> dict[str, str]:
    """What an empty advanced field means for a model family, as placeholder text."""
    rules = TURBO if "turbo" in family else BASE
    return {"steps": f"{rules.default_steps} (the model's)",
            "guidance": f"{rules.default_guidance:g} (the model's)" if rules.uses_cfg else "unused by turbo models",
            "shift": f"{rules.default_shift:g} (the model's)"}


def _fields(values: dict) -> dict:
    """The form's request fields that were set, from the /generate values by name (page/inputs.py)."""
    song = ({"sample_query": values["description"]} if values["mode"] == "simple"
            else {"caption": values["caption"], "lyrics": values["lyrics"]})
    typed = {name: optional_text(values[name]) for name in ("seed", "inference_steps", "guidance_scale", "shift",
                                                             "bpm", "key_scale", "retake_seed")}
    language = values["vocal_language"]
    fields = {**song, "duration": values["duration"], "model": values["model"],
              "batch_size": int(values["batch_size"]), "audio_format": values["audio_format"],
              "thinking": bool(values["thinking"]), **typed, "time_signature": values["time_signature"] or None,
              "auto_lrc": bool(values["auto_lrc"]) or None, "auto_score": bool(values["auto_score"]) or None,
              "keep_best": optional_text(values["keep_best"]),
              "vocal_language": None if language == "auto" else language,
              "enable_normalization": bool(values["enable_normalization"]),
              **{name: values[name] for name in ("normalization_db", "fade_in_duration", "fade_out_duration")},
              "retake_variance": values["retake_variance"] or None}
    if values.get("analysis"):  # an analysis instead of songs: the source (editing accordion) or the caption
        fields[values["analysis"]] = True
    return {k: v for k, v in fields.items() if v is not None}


def _progress_text(manager: TaskManager, task: Task) -> tuple[float, str]:
    """(fraction, description) for the progress bar: the queue position, then the stage and an ETA."""
    if task.state is TaskState.QUEUED:
        ahead = manager.queue_position(task) - 1
        return 0.0, f"In the queue: {ahead} ahead of you" if ahead > 0 else "In the queue: next"
    fraction = max(0.0, min(1.0, task.progress))
    text = task.stage.replace("_", " ")  # Gradio's bar adds the percentage
    elapsed = time.time() - (task.started or time.time())
    if 0.05 < fraction < 1:
        remaining = round(elapsed * (1 - fraction) / fraction)
        text += f" · about {remaining // 60}:{remaining % 60:02d} left"
    return fraction, text


def _summary(task: Task) -> dict:
    summary = {k: task.params.get(k) for k in ("caption", "bpm", "key_scale", "time_signature",
                                               "vocal_language", "inference_steps", "shift", "seeds",
                                               "normalization_gain_db", "fade_in_duration", "fade_out_duration")}
    if task.params.get("retake_seeds"):
        summary.update(retake_seeds=task.params["retake_seeds"], retake_variance=task.params["retake_variance"])
    summary["model"], summary["total_seconds"] = task.model, round(task.timings.get("total", 0.0), 2)
    summary["lm_metadata"] = task.params.get("lm_metadata", {})
    summary.update(task_type=task.params.get("task_type", task.request.task_type), **task.sources)
    if task.params.get("stems"):
        summary["stems"] = task.params["stems"]
    scored = [{"song": i + 1, "seed": s.seed, **{k: v for k, v in s.extras.items() if k not in ("lrc", "lrc_source")}}
              for i, s in enumerate(task.songs) if s.extras]
    if scored:
        summary["songs"] = scored
    if "takes" in task.params:
        summary["takes"] = task.params["takes"]
    return json.loads(json.dumps(summary, default=str))


def _lrc_text(task: Task) -> str:
    """Every song's LRC, one block per song (the LRC textbox)."""
    blocks = [f"# Song {i + 1} (seed {s.seed})\n{s.extras['lrc']}" for i, s in enumerate(task.songs)
              if s.extras.get("lrc")]
    return "\n\n".join(blocks)


def build_ui(engine: Engine, manager: TaskManager) -> gr.Blocks:
    """The page. Components are made in page order (Gradio numbers them so), then the events."""
    infos = {m.name: m.family for m in engine.models.installed()}
    with gr.Blocks(title="ACE-Step 1.5") as page:
        gr.Markdown(_title(engine))
        form = _song_form(engine, infos)
        editing: EditingControls = editing_controls()
        adapters: LoraControls = lora_controls(engine)
        with gr.Row():
            button = gr.Button("Generate", variant="primary", elem_id="generate", scale=3)
            stop_button = gr.Button("Stop", variant="stop", elem_id="stop", scale=1)
        outputs = _outputs()
        actions = PageActions(engine, manager, infos, editing, adapters)
        form.wire(actions)
        button.click(actions.generate, ordered({**form.components, **editing.components, **adapters.components}),
                     outputs, concurrency_limit=None)
        stop_button.click(actions.stop, None, outputs[0])
    return page


def _title(engine: Engine) -> str:
    banner = ("**These are random-weight test checkpoints: every song is noise, not music.**"
              if engine.models.random_weights else "")
    return "# ACE-Step 1.5 music generation" + (f"\n{banner}" if banner else "")


# -- layout ---------------------------------------------------------------------------------------

@dataclass
class SongForm:
    """The form's controls by their /generate names (page/inputs.py), and the ones its events hang on."""
    components: dict
    custom_tab: gr.Tab
    simple_tab: gr.Tab
    format_button: gr.Button

    def wire(self, actions: "PageActions") -> None:
        c = self.components
        self.custom_tab.select(lambda: "custom", None, c["mode"])
        self.simple_tab.select(lambda: "simple", None, c["mode"])
        c["model"].change(actions.defaults_for, c["model"], [c["inference_steps"], c["guidance_scale"], c["shift"]])
        self.format_button.click(actions.format_lyrics, [c["caption"], c["lyrics"]], [c["caption"], c["lyrics"]])


def _song_form(engine: Engine, infos: dict[str, str]) -> SongForm:
    """The song (two tabs), its settings beside it, and the advanced accordion below."""
    has_planner = engine.models.planner is not None
    mode = gr.State(START["mode"])
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Tabs():
                with gr.Tab("Custom: caption and lyrics", elem_id="tab-custom") as custom_tab:
                    caption = gr.Textbox(label="Caption", info=CAPTION_HINT, lines=2, elem_id="caption",
                                         placeholder="e.g. upbeat indie pop, jangly guitars, 120 bpm")
                    lyrics = gr.Textbox(label="Lyrics", info=LYRICS_HINT, lines=8, elem_id="lyrics",
                                        placeholder="[Verse]\nWalking down the street\n\n[Chorus]\nWe are alive")
                    format_button = gr.Button("Format my lyrics (planner)", size="sm", elem_id="format",
                                              interactive=has_planner)
                    if not has_planner:
                        gr.Markdown(f"*{needs_planner('Formatting')}.*")
                with gr.Tab("Simple: describe the song", elem_id="tab-simple") as simple_tab:
                    description = gr.Textbox(label="Description", info=DESCRIPTION_HINT, lines=3,
                                             elem_id="description", interactive=has_planner,
                                             placeholder="a melancholic folk song about rain in Lisbon")
                    if not has_planner:
                        gr.Markdown(f"*{needs_planner('Simple mode')}; use the Custom tab.*", elem_id="no-planner")
        with gr.Column(scale=2):
            settings = _song_settings(engine, infos)
    components = {"mode": mode, "description": description, "caption": caption, "lyrics": lyrics, **settings,
                  **_advanced(model_defaults(infos.get(engine.models.default_model, "turbo")))}
    return SongForm(components, custom_tab, simple_tab, format_button)


def _song_settings(engine: Engine, infos: dict[str, str]) -> dict:
    """Length, model, count, seed, format and thinking, by their /generate names."""
    return {"duration": gr.Slider(10, 600, value=START["duration"], step=1, label="Duration (s)",
                                  elem_id="duration"),
            "model": gr.Dropdown(list(infos), value=engine.models.default_model, label="Model", elem_id="model"),
            "batch_size": gr.Slider(1, MAX_BATCH, value=START["batch_size"], step=1, label="Songs"),
            "seed": gr.Textbox(label="Seed", placeholder="random (a,b,c: one per song)", elem_id="seed"),
            "audio_format": gr.Dropdown(list(FORMATS), value=START["audio_format"], label="Format"),
            "thinking": gr.Checkbox(label="Planner writes audio codes (thinking)", value=START["thinking"],
                                    interactive=engine.models.planner is not None),
            "auto_lrc": gr.Checkbox(label="Lyric timestamps (LRC)", value=START["auto_lrc"], elem_id="auto-lrc"),
            "auto_score": gr.Checkbox(label="Lyric-alignment scores", value=START["auto_score"], elem_id="auto-score"),
            "keep_best": gr.Textbox(label="Keep the best", placeholder="all songs (best-of-N: keep K of them)",
                                    elem_id="keep-best"),
            "analysis": gr.Dropdown(ANALYSIS_CHOICES if engine.models.planner is not None else
                                    [c for c in ANALYSIS_CHOICES if c[1] not in MODE_NEEDS_PLANNER],
                                    value=START["analysis"], label="Action", elem_id="action",
                                    info="Analyze: no song is made; the source is the editing section's upload")}


def _advanced(defaults: dict[str, str]) -> dict:
    """The accordion of fields whose empty value means the model's (or the planner's) own."""
    with gr.Accordion("Advanced (empty: the model's default)", open=False, elem_id="advanced"):
        with gr.Row():
            steps = gr.Textbox(label="Steps", placeholder=defaults["steps"], elem_id="steps")
            guidance = gr.Textbox(label="Guidance", placeholder=defaults["guidance"], elem_id="guidance")
            shift = gr.Textbox(label="Shift", placeholder=defaults["shift"], elem_id="shift")
        with gr.Row():
            bpm = gr.Textbox(label="BPM", placeholder="the planner's, else free (30-300)", elem_id="bpm")
            key = gr.Textbox(label="Key", placeholder="e.g. C major", elem_id="key")
            time_signature = gr.Dropdown(["", "2", "3", "4", "6"], value=START["time_signature"],
                                         label="Time signature")
            language = gr.Dropdown(["auto", *LANGUAGES], value=START["vocal_language"], label="Vocal language")
        with gr.Row():  # finishing, as upstream: each song's peak to -1 dBFS unless switched off, then fades
            normalize = gr.Checkbox(label="Normalize peak", value=START["enable_normalization"],
                                    elem_id="enable-normalization")
            peak = gr.Number(label="Peak (dBFS, -60 to 0)", value=START["normalization_db"], elem_id="normalization-db")
            fade_in = gr.Number(label="Fade in (s)", value=START["fade_in_duration"], minimum=0, elem_id="fade-in")
            fade_out = gr.Number(label="Fade out (s)", value=START["fade_out_duration"], minimum=0, elem_id="fade-out")
        with gr.Row():  # a nearby take of the same seeds: their noise blended with a retake seed's
            retake_seed = gr.Textbox(label="Retake seed", placeholder="random (a,b,c: one per song)",
                                     elem_id="retake_seed")
            retake_variance = gr.Slider(0, 1, value=START["retake_variance"], step=0.01, elem_id="retake_variance",
                                        label="Retake variance (0: the song itself, 1: the retake seed's)")
    return {"inference_steps": steps, "guidance_scale": guidance, "shift": shift, "bpm": bpm, "key_scale": key,
            "time_signature": time_signature, "vocal_language": language, "enable_normalization": normalize,
            "normalization_db": peak, "fade_in_duration": fade_in, "fade_out_duration": fade_out,
            "retake_seed": retake_seed, "retake_variance": retake_variance}


def _outputs() -> list:
    """/generate's outputs in its order: the status line, the players, the downloads, the LRC, the metadata."""
    status = gr.Markdown(elem_id="status")
    players = [gr.Audio(visible=False, type="filepath", interactive=False, elem_id=f"song-{i}")
               for i in range(MAX_PLAYERS)]
    downloads = gr.File(label="Download", file_count="multiple", interactive=False)
    lrc = gr.Textbox(label="Lyrics with timestamps (LRC)", lines=8, interactive=False, elem_id="lrc")
    metadata = gr.JSON(label="Settings used and the planner's metadata")
    return [status, *players, downloads, lrc, metadata]


# -- events ---------------------------------------------------------------------------------------

class PageActions:
    """What the page's buttons do. Method names are the page's API names (/generate, /stop, ...)."""

    def __init__(self, engine: Engine, manager: TaskManager, infos: dict[str, str], editing: EditingControls,
                 adapters: LoraControls):
        self.engine, self.manager, self.infos = engine, manager, infos
        self.editing, self.adapters = editing, adapters
        self.running: dict[str, str] = {}  # browser session -> the task it is waiting for (what Stop cancels)

    # Gradio injects the request and the progress tracker only into leading positional parameters.
    def generate(self, request: gr.Request, progress=gr.Progress(), *values):
        by_name = named(values)
        try:
            task = self.editing.submit(self.manager, {**_fields(by_name), **self.adapters.fields(by_name)}, by_name)
        except (AceStepError, QueueFull) as exc:
            raise gr.Error(str(exc)) from None
        self.running[request.session_hash] = task.id
        try:
            while not task.done.wait(POLL_S):
                fraction, text = _progress_text(self.manager, task)
                progress(fraction, desc=text)
        finally:
            self.running.pop(request.session_hash, None)
        return _results(task)

    def stop(self, request: gr.Request) -> str:
        task_id = self.running.get(request.session_hash)
        task = self.manager.cancel(task_id) if task_id else None
        if task is None:
            return "Nothing to stop."
        return "Stopped: the task was cancelled." if task.finished else "Stopping at the next step..."

    def format_lyrics(self, caption: str, lyrics: str):
        try:
            result = planner_services.format_input(self.engine.models, parse({"caption": caption, "lyrics": lyrics}))
        except AceStepError as exc:
            raise gr.Error(str(exc)) from None
        return result["caption"], result["lyrics"]

    def defaults_for(self, name: str):
        hints = model_defaults(self.infos.get(name, "turbo"))
        return [gr.update(placeholder=hints[k]) for k in ("steps", "guidance", "shift")]


def _results(task: Task) -> list:
    """/generate's outputs for a finished task: a failure is an error, a cancel a status line."""
    hidden = [gr.update(visible=False, value=None) for _ in range(MAX_PLAYERS)]
    if task.state is TaskState.FAILED and task.cancelled.is_set():
        return ["Stopped: the task was cancelled.", *hidden, None, "", None]  # asked for: not an error
    if task.state is TaskState.FAILED:
        raise gr.Error(task.error or "generation failed")
    if task.analysis is not None:
        return [f"Done: {task.plan.mode}, no audio made", *hidden, None, "",
                {"mode": task.plan.mode, **task.analysis, **task.sources}]
    # A several-stem task can make more songs than there are players: the rest are in the downloads.
    players = [gr.update(visible=True, value=str(s.path), label=f"{s.stem or f'Song {i + 1}'} (seed {s.seed})")
               for i, s in enumerate(task.songs[:MAX_PLAYERS])]
    players += hidden[len(players):]
    summary = _summary(task)
    done = f"Done: {len(task.songs)} song(s) in {summary['total_seconds']} s"
    return [done, *players, [str(s.path) for s in task.songs], _lrc_text(task), summary]
