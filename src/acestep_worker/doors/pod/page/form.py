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

import gradio as gr

from ....schema.formats import FORMATS
from ....errors import AceStepError
from ....models.variants import BASE, TURBO
from ....pipeline import planner_services
from ....pipeline.engine import Engine
from ....schema.request import MAX_BATCH, parse
from ....schema.values import LANGUAGES
from ..queue import QueueFull, Task, TaskManager, TaskState
from .edit_controls import EditingControls, editing_controls, optional_text
from .inputs import STARTING_VALUES as START
from .inputs import named, ordered
from .lora_controls import LoraControls, lora_controls

MAX_PLAYERS = MAX_BATCH
POLL_S = 0.5
CAPTION_HINT = ("Describe the sound, not the story: genre, mood, instruments, vocals, tempo, production. "
                "e.g. \"dreamy lofi hip hop, rhodes piano, vinyl crackle, soft female vocals\"")
LYRICS_HINT = ("One tag per section, then its lines: [Intro] [Verse] [Pre-Chorus] [Chorus] [Bridge] [Outro]. "
               "Empty or [inst] for an instrumental.")
DESCRIPTION_HINT = ("One or two sentences; the planner writes the caption, the lyrics, tempo and key. "
                    "Name a language or say \"instrumental\" if you want one.")
NO_PLANNER = "needs the 5 Hz planner, which this server does not load (ACESTEP_LM_MODEL_PATH)"


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
                                                             "bpm", "key_scale")}
    language = values["vocal_language"]
    fields = {**song, "duration": values["duration"], "model": values["model"],
              "batch_size": int(values["batch_size"]), "audio_format": values["audio_format"],
              "thinking": bool(values["thinking"]), **typed, "time_signature": values["time_signature"] or None,
              "vocal_language": None if language == "auto" else language}
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
                                               "vocal_language", "inference_steps", "shift", "seeds")}
    summary["model"], summary["total_seconds"] = task.model, round(task.timings.get("total", 0.0), 2)
    summary["lm_metadata"] = task.params.get("lm_metadata", {})
    summary.update(task_type=task.params.get("task_type", task.request.task_type), **task.sources)
    return json.loads(json.dumps(summary, default=str))


def build_ui(engine: Engine, manager: TaskManager) -> gr.Blocks:
    infos = {m.name: m.family for m in engine.models.installed()}
    has_planner = engine.models.planner is not None
    banner = ("**These are random-weight test checkpoints: every song is noise, not music.**"
              if engine.models.random_weights else "")
    defaults = model_defaults(infos.get(engine.models.default_model, "turbo"))

    running: dict[str, str] = {}  # browser session -> the task it is waiting for (what Stop cancels)

    # Gradio injects the request and the progress tracker only into leading positional parameters.
    def generate(request: gr.Request, progress=gr.Progress(), *values):
        by_name = named(values)
        try:
            task = editing.submit(manager, {**_fields(by_name), **adapters.fields(by_name)}, by_name)
        except (AceStepError, QueueFull) as exc:
            raise gr.Error(str(exc)) from None
        running[request.session_hash] = task.id
        try:
            while not task.done.wait(POLL_S):
                fraction, text = _progress_text(manager, task)
                progress(fraction, desc=text)
        finally:
            running.pop(request.session_hash, None)
        hidden = [gr.update(visible=False, value=None) for _ in range(MAX_PLAYERS)]
        if task.state is TaskState.FAILED and task.cancelled.is_set():
            return ["Stopped: the task was cancelled.", *hidden, None, None]  # asked for: not an error
        if task.state is TaskState.FAILED:
            raise gr.Error(task.error or "generation failed")
        players = [gr.update(visible=True, value=str(s.path), label=f"Song {i + 1} (seed {s.seed})")
                   for i, s in enumerate(task.songs)]
        players += hidden[len(players):]
        summary = _summary(task)
        done = f"Done: {len(task.songs)} song(s) in {summary['total_seconds']} s"
        return [done, *players, [str(s.path) for s in task.songs], summary]

    def stop(request: gr.Request) -> str:
        task_id = running.get(request.session_hash)
        task = manager.cancel(task_id) if task_id else None
        if task is None:
            return "Nothing to stop."
        return "Stopped: the task was cancelled." if task.finished else "Stopping at the next step..."

    def format_lyrics(caption: str, lyrics: str):
        try:
            result = planner_services.format_input(engine.models, parse({"caption": caption, "lyrics": lyrics}))
        except AceStepError as exc:
            raise gr.Error(str(exc)) from None
        return result["caption"], result["lyrics"]

    def defaults_for(name: str):
        hints = model_defaults(infos.get(name, "turbo"))
        return [gr.update(placeholder=hints[k]) for k in ("steps", "guidance", "shift")]

    with gr.Blocks(title="ACE-Step 1.5") as page:
        gr.Markdown("# ACE-Step 1.5 music generation" + (f"\n{banner}" if banner else ""))
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
                            gr.Markdown(f"*Formatting {NO_PLANNER}.*")
                    with gr.Tab("Simple: describe the song", elem_id="tab-simple") as simple_tab:
                        description = gr.Textbox(label="Description", info=DESCRIPTION_HINT, lines=3,
                                                 elem_id="description", interactive=has_planner,
                                                 placeholder="a melancholic folk song about rain in Lisbon")
                        if not has_planner:
                            gr.Markdown(f"*Simple mode {NO_PLANNER}; use the Custom tab.*", elem_id="no-planner")
            with gr.Column(scale=2):
                duration = gr.Slider(10, 600, value=START["duration"], step=1, label="Duration (s)",
                                     elem_id="duration")
                model = gr.Dropdown(list(infos), value=engine.models.default_model, label="Model", elem_id="model")
                batch_size = gr.Slider(1, MAX_BATCH, value=START["batch_size"], step=1, label="Songs")
                seed = gr.Textbox(label="Seed", placeholder="random (a,b,c: one per song)", elem_id="seed")
                audio_format = gr.Dropdown(list(FORMATS), value=START["audio_format"], label="Format")
                thinking = gr.Checkbox(label="Planner writes audio codes (thinking)", value=START["thinking"],
                                       interactive=has_planner)
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
        editing: EditingControls = editing_controls()
        adapters: LoraControls = lora_controls(engine)
        with gr.Row():
            button = gr.Button("Generate", variant="primary", elem_id="generate", scale=3)
            stop_button = gr.Button("Stop", variant="stop", elem_id="stop", scale=1)
        status = gr.Markdown(elem_id="status")
        players = [gr.Audio(visible=False, type="filepath", interactive=False, elem_id=f"song-{i}")
                   for i in range(MAX_PLAYERS)]
        downloads = gr.File(label="Download", file_count="multiple", interactive=False)
        metadata = gr.JSON(label="Settings used and the planner's metadata")
        form = {"mode": mode, "description": description, "caption": caption, "lyrics": lyrics,
                "duration": duration, "model": model, "batch_size": batch_size, "seed": seed,
                "audio_format": audio_format, "inference_steps": steps, "guidance_scale": guidance, "shift": shift,
                "bpm": bpm, "key_scale": key, "time_signature": time_signature, "vocal_language": language,
                "thinking": thinking}
        custom_tab.select(lambda: "custom", None, mode)
        simple_tab.select(lambda: "simple", None, mode)
        model.change(defaults_for, model, [steps, guidance, shift])
        format_button.click(format_lyrics, [caption, lyrics], [caption, lyrics])
        button.click(generate, ordered({**form, **editing.components, **adapters.components}),
                     [status, *players, downloads, metadata], concurrency_limit=None)
        stop_button.click(stop, None, status)
    return page
