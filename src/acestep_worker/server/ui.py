"""The Gradio page: a form over the same request schema, submitting to the same task queue.

Every control maps to one request field by name; the page builds a dict and the schema validates
it, so its ranges, defaults and error sentences are the API's.
"""

from __future__ import annotations

import json

import gradio as gr

from ..audio_io import FORMATS
from ..engine import Engine
from ..errors import AceStepError
from ..request import LANGUAGES, MAX_BATCH, parse
from .editing_ui import EditingControls, editing_controls
from .lora_ui import LoraControls, lora_controls
from .tasks import QueueFull, TaskManager, TaskState

MAX_PLAYERS = MAX_BATCH


def _fields(caption, lyrics, duration, model, batch_size, seed, audio_format, steps, guidance, shift, bpm, key,
            time_signature, language, thinking) -> dict:
    fields = {"caption": caption, "lyrics": lyrics, "duration": duration, "model": model,
              "batch_size": int(batch_size), "audio_format": audio_format, "thinking": bool(thinking),
              "seed": seed.strip() or None, "inference_steps": int(steps) if steps else None,
              "guidance_scale": guidance or None, "shift": shift or None, "bpm": int(bpm) if bpm else None,
              "key_scale": key or None, "time_signature": time_signature or None,
              "vocal_language": None if language == "auto" else language}
    return {k: v for k, v in fields.items() if v is not None}


def build_ui(engine: Engine, manager: TaskManager) -> gr.Blocks:
    models = [m.name for m in engine.models()]
    banner = ("**These are random-weight test checkpoints: every song is noise, not music.**"
              if engine.random_weights else "")

    def generate(*values):
        base, edit = values[:len(inputs)], values[len(inputs):len(inputs) + len(editing.components)]
        adapter = values[len(inputs) + len(editing.components):]
        try:
            task = editing.submit(manager, {**_fields(*base), **adapters.fields(adapter)}, edit)
        except (AceStepError, QueueFull) as exc:
            raise gr.Error(str(exc)) from None
        hidden = [gr.update(visible=False, value=None) for _ in range(MAX_PLAYERS)]
        while not task.done.wait(0.5):
            position = manager.queue_position(task)
            status = (f"Queued ({position} ahead of you)" if task.state is TaskState.QUEUED
                      else f"{task.stage}: {round(100 * task.progress)}%")
            yield [status, *hidden, None, None]
        if task.state is TaskState.FAILED:
            raise gr.Error(task.error or "generation failed")
        players = [gr.update(visible=True, value=str(s.path), label=f"Song {i + 1} (seed {s.seed})")
                   for i, s in enumerate(task.songs)]
        players += hidden[len(players):]
        summary = {k: task.params.get(k) for k in ("caption", "bpm", "key_scale", "time_signature",
                                                   "vocal_language", "inference_steps", "shift", "seeds")}
        summary["model"], summary["total_seconds"] = task.model, round(task.timings.get("total", 0.0), 2)
        summary["lm_metadata"] = task.params.get("lm_metadata", {})
        summary.update(task_type=task.params.get("task_type", task.request.task_type), **task.sources)
        done = f"Done: {len(task.songs)} song(s) in {summary['total_seconds']} s"
        yield [done, *players, [str(s.path) for s in task.songs], json.loads(json.dumps(summary, default=str))]

    with gr.Blocks(title="ACE-Step 1.5") as page:
        gr.Markdown("# ACE-Step 1.5 music generation" + (f"\n{banner}" if banner else ""))
        with gr.Row():
            with gr.Column(scale=3):
                caption = gr.Textbox(label="Caption", placeholder="e.g. dreamy lofi hip hop, rhodes piano", lines=2,
                                     elem_id="caption")
                lyrics = gr.Textbox(label="Lyrics (empty or [inst] for an instrumental)", lines=8, elem_id="lyrics")
            with gr.Column(scale=2):
                duration = gr.Slider(10, 600, value=30, step=1, label="Duration (s)", elem_id="duration")
                model = gr.Dropdown(models, value=engine.default_model, label="Model")
                batch_size = gr.Slider(1, MAX_BATCH, value=1, step=1, label="Songs")
                seed = gr.Textbox(label="Seed (empty: random; a,b,c: one per song)", elem_id="seed")
                audio_format = gr.Dropdown(list(FORMATS), value="mp3", label="Format")
                thinking = gr.Checkbox(label="Planner writes audio codes (thinking)", value=False,
                                       interactive=engine.planner is not None)
        with gr.Accordion("Advanced", open=False):
            with gr.Row():
                steps = gr.Number(label="Steps (empty: the model's)", precision=0)
                guidance = gr.Number(label="Guidance (base/sft)")
                shift = gr.Number(label="Shift")
            with gr.Row():
                bpm = gr.Number(label="BPM", precision=0)
                key = gr.Textbox(label="Key (e.g. C major)")
                time_signature = gr.Dropdown(["", "2", "3", "4", "6"], value="", label="Time signature")
                language = gr.Dropdown(["auto", *LANGUAGES], value="auto", label="Vocal language")
        editing: EditingControls = editing_controls()
        adapters: LoraControls = lora_controls(engine)
        button = gr.Button("Generate", variant="primary", elem_id="generate")
        status = gr.Markdown(elem_id="status")
        players = [gr.Audio(visible=False, type="filepath", interactive=False, elem_id=f"song-{i}")
                   for i in range(MAX_PLAYERS)]
        downloads = gr.File(label="Download", file_count="multiple", interactive=False)
        metadata = gr.JSON(label="Settings used and the planner's metadata")
        inputs = [caption, lyrics, duration, model, batch_size, seed, audio_format, steps, guidance, shift, bpm, key,
                  time_signature, language, thinking]
        button.click(generate, inputs + editing.components + adapters.components, [status, *players, downloads, metadata],
                     concurrency_limit=None)
    return page

