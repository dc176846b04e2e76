"""The Gradio page's editing controls: source and reference audio, the task, the repaint range, the
cover strength and the stem, in one accordion that the page adds below its own form.

Every control is a request field by name, and its choices come from the schema's own field (so a
task type or track name the schema learns appears here without a change). Uploaded audio is copied
into the input folder under a unique name and handed to the task, which deletes it when it ends.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from ..request import GenerationRequest, parse
from .tasks import TaskManager
from .uploads import discard, store

AUDIO_FIELDS = ("src_audio", "reference_audio")


def _choices(name: str) -> list[str]:
    """The values a Literal-typed request field accepts (through Optional and tuples)."""
    field = GenerationRequest.model_fields.get(name)
    pending = [field.annotation] if field is not None else []
    found: list[str] = []
    while pending:
        kind = pending.pop()
        if typing.get_origin(kind) is typing.Literal:
            found += [str(v) for v in typing.get_args(kind)]
        else:
            pending += list(typing.get_args(kind))
    return found


def _typed(text) -> str | float | None:
    """A number field as typed: empty is None (the schema's default); the schema parses the rest."""
    if isinstance(text, str):
        return text.strip() or None
    return text


@dataclass
class EditingControls:
    components: list  # in the order `values` arrive in submit()

    def fields(self, values: tuple) -> tuple[dict, dict[str, str]]:
        """(request fields that were set, audio file paths by field)."""
        src, ref, task_type, start, end, strength, track = values
        fields = {"task_type": task_type or None, "repainting_start": _typed(start), "repainting_end": _typed(end),
                  "audio_cover_strength": _typed(strength), "track_name": track or None}
        files = {name: path for name, path in zip(AUDIO_FIELDS, (src, ref)) if path}
        return {k: v for k, v in fields.items() if v is not None and k in GenerationRequest.model_fields}, files

    def submit(self, manager: TaskManager, base: dict, values: tuple):
        """Validate and queue one generation with its audio; the uploads go with the task."""
        fields, files = self.fields(values)
        stored: list[Path] = []
        try:
            for name, path in files.items():
                with open(path, "rb") as handle:
                    stored.append(store(name, handle, path, manager.input_dir, manager.audio_policy.limits))
                fields[name] = str(stored[-1])
            request = parse({**base, **fields})
            manager.engine.check(request)  # what the chosen model cannot do, as the API refuses it
            manager.check_audio(request)
            return manager.submit(request, inputs=stored)
        except BaseException:
            discard(stored)
            raise


def editing_controls() -> EditingControls:
    tasks = _choices("task_type") or ["text2music"]
    tracks = _choices("track_name")
    with gr.Accordion("Edit a song: cover, repaint, extend, stems", open=False, elem_id="editing"):
        gr.Markdown("Give a source song to cover it, repaint a range (an end past the song extends it), or "
                    "extract / add a stem (base models). A reference steers the timbre of any task.")
        with gr.Row():
            src = gr.Audio(label="Source song (src_audio)", type="filepath", sources=["upload"],
                           elem_id="src-audio")
            ref = gr.Audio(label="Timbre reference (reference_audio)", type="filepath", sources=["upload"],
                           elem_id="reference-audio")
        with gr.Row():
            task_type = gr.Dropdown(tasks, value=tasks[0], label="Task", elem_id="task-type")
            # Text, not gr.Number: a Number field shows 0 when empty, and empty means "the default" here.
            start = gr.Textbox(label="Repaint from (s)", placeholder="empty: the start", elem_id="repainting-start")
            end = gr.Textbox(label="Repaint to (s)", placeholder="empty or -1: the end", elem_id="repainting-end")
            strength = gr.Textbox(label="Cover strength (0-1)", placeholder="empty: 1",
                                  elem_id="audio-cover-strength")
            track = gr.Dropdown(["", *tracks], value="", label="Track (extract, lego)", allow_custom_value=True,
                                elem_id="track-name")
    return EditingControls([src, ref, task_type, start, end, strength, track])
