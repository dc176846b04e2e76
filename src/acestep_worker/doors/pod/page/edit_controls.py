"""The Gradio page's editing controls: source and reference audio, the task, the repaint range, the
cover strength, the stems (several at once) and flow-edit, in one accordion that the page adds below its own form.

Every control is a request field by name, and its choices come from the schema's own field (so a
task type or track name the schema learns appears here without a change). Uploaded audio is copied
into the input folder under a unique name and handed to the task, which deletes it when it ends.

Each upload has a trim, two ways: Gradio's waveform editor (scissors) cuts in the browser and uploads
the cut as a 16-bit WAV at 48 kHz; the "from (s)" / "to (s)" fields cut on the server, exactly and
losslessly (FLAC), and also work for API clients of the page. Both can be used: the fields then
apply to what the editor uploaded.
"""

from __future__ import annotations

import functools
import math
import typing
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from ....audio.decode import AudioLimits, probe
from ....audio.trim import TrimLabels, parse_range
from ....errors import AceStepError
from ....schema.request import GenerationRequest, parse
from ....schema.task_types import STEM_NAMES
from ....schema.units import SAMPLE_RATE
from ..queue import TaskManager
from ..uploads import discard, store, store_range
from .inputs import STARTING_VALUES as START

AUDIO_FIELDS = ("src_audio", "reference_audio")
TYPED_FIELDS = ("repainting_start", "repainting_end", "audio_cover_strength", "flow_edit_n_min", "flow_edit_n_max",
                "flow_edit_n_avg")  # text boxes: empty is the default
# (request field, what the page calls it): the trim controls' labels and their error sentences use these.
UPLOADS = (("src_audio", "Source"), ("reference_audio", "Reference"))
TRIM_LABELS = {field: TrimLabels(field, f"{name} from (s)", f"{name} to (s)") for field, name in UPLOADS}


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


def stem_choices() -> list[str]:
    """What the stem picker offers: the schema's track names and its derived stems."""
    return list(STEM_NAMES)


def _stems(value) -> list[str] | str | None:
    """The stem picker's value (a list; an API client may send one name or a comma string): None when empty."""
    if isinstance(value, (list, tuple)):
        return list(value) or None
    return value or None


def optional_text(text) -> str | float | None:
    """A field typed into a text box: empty is None (the schema's default, the model's own); the
    schema parses the rest. Text boxes, not gr.Number, because a Number shows 0 when empty."""
    if isinstance(text, str):
        return text.strip() or None
    return text


@dataclass
class EditingControls:
    components: dict  # by their names in inputs.GENERATE_INPUTS

    def fields(self, values: dict) -> tuple[dict, dict[str, str], dict]:
        """(request fields that were set, audio file paths by field, trim ranges by field), from the
        /generate values by name."""
        fields = {"task_type": values["task_type"] or None, "track_name": _stems(values["track_name"]),
                  "flow_edit_morph": bool(values["flow_edit_morph"]) or None,
                  "flow_edit_source_caption": values["flow_edit_source_caption"] or None,
                  "flow_edit_source_lyrics": values["flow_edit_source_lyrics"] or None,
                  **{name: optional_text(values[name]) for name in TYPED_FIELDS}}
        files = {name: values[name] for name in AUDIO_FIELDS if values[name]}
        trims = {name: parse_range(TRIM_LABELS[name], values[f"{name}_from"], values[f"{name}_to"])
                 for name in AUDIO_FIELDS}
        for name, trim in trims.items():
            if not trim.whole and name not in files:
                label = TRIM_LABELS[name]
                raise AceStepError(f"{label.start} / {label.end} are set but no {name} was uploaded; upload the "
                                   "song or clear them")
        fields = {k: v for k, v in fields.items() if v is not None and k in GenerationRequest.model_fields}
        return fields, files, trims

    def submit(self, manager: TaskManager, base: dict, values: dict):
        """Validate and queue one generation with its audio; the uploads go with the task."""
        fields, files, trims = self.fields(values)
        stored: list[Path] = []
        limits = manager.audio_policy.limits
        try:
            for name, path in files.items():
                if trims[name].whole:
                    with open(path, "rb") as handle:
                        stored.append(store(name, handle, path, manager.input_dir, limits))
                else:
                    stored.append(store_range(TRIM_LABELS[name], Path(path), trims[name], manager.input_dir, limits))
                fields[name] = str(stored[-1])
            request = parse({**base, **fields})
            return manager.submit(request, inputs=stored)  # checked as the API's are
        except BaseException:
            discard(stored)
            raise


def describe_upload(field: str, path: str | None):
    """What the page shows under an upload: its length, rate and channels, and the "to" field's hint."""
    if not path:
        return "", gr.update(placeholder="empty: the end")
    try:
        info = probe(field, path, AudioLimits(max_seconds=math.inf))  # a long take is what a trim is for
    except AceStepError as exc:
        return f"*{exc}*", gr.update(placeholder="empty: the end")
    channels = {1: "mono", 2: "stereo"}.get(info.channels, f"{info.channels} channels")
    text = f"Uploaded: **{info.duration_s:.2f} s**, {info.sample_rate} Hz, {channels}, {info.format}"
    return text, gr.update(placeholder=f"empty: the end ({info.duration_s:.2f} s)")


def _upload_with_trim(field: str, title: str, elem: str) -> tuple:
    """An upload, its length, and its from / to fields; returns (audio, from, to)."""
    labels = TRIM_LABELS[field]
    with gr.Column():
        # The editor's own trim decodes in the browser and uploads a WAV at this rate: the model's, so
        # the server does not resample it a second time.
        audio = gr.Audio(label=f"{title} ({field})", type="filepath", sources=["upload"], elem_id=elem,
                         editable=True, waveform_options=gr.WaveformOptions(sample_rate=SAMPLE_RATE))
        length = gr.Markdown(elem_id=f"{elem}-length")
        with gr.Row():
            # Text, not gr.Number: empty means "the whole song", which a Number field cannot show.
            start = gr.Textbox(label=labels.start, placeholder="empty: the start", elem_id=f"{elem}-from")
            end = gr.Textbox(label=labels.end, placeholder="empty: the end", elem_id=f"{elem}-to")
    audio.change(functools.partial(describe_upload, field), audio, [length, end], queue=False,
                 api_visibility="private")
    return audio, start, end


def editing_controls() -> EditingControls:
    tasks = _choices("task_type") or ["text2music"]
    tracks = stem_choices()
    with gr.Accordion("Edit a song: cover, repaint, extend, stems", open=False, elem_id="editing"):
        gr.Markdown("Give a source song to cover it, repaint a range (an end past the song extends it), or "
                    "extract / add a stem (base models). A reference steers the timbre of any task. To use "
                    "part of an upload, give its from / to seconds, or cut it with the scissors under the "
                    "waveform.")
        with gr.Row():
            src, src_from, src_to = _upload_with_trim("src_audio", "Source song", "src-audio")
            ref, ref_from, ref_to = _upload_with_trim("reference_audio", "Timbre reference", "reference-audio")
        with gr.Row():
            task_type = gr.Dropdown(tasks, value=START["task_type"], label="Task", elem_id="task-type")
            # Text, not gr.Number: a Number field shows 0 when empty, and empty means "the default" here.
            start = gr.Textbox(label="Repaint from (s)", placeholder="empty: the start", elem_id="repainting-start")
            end = gr.Textbox(label="Repaint to (s)", placeholder="empty or -1: the end", elem_id="repainting-end")
            strength = gr.Textbox(label="Cover strength (0-1)", placeholder="empty: 1",
                                  elem_id="audio-cover-strength")
            # Several stems come from one job, the source encoded once (extract also offers the instrumental:
            # the source minus the vocals).
            track = gr.Dropdown(tracks, value=list(START["track_name"]), multiselect=True,
                                label="Stems (extract, lego)", elem_id="track-name")
        flow = _flow_edit_controls()
    return EditingControls({**flow, "src_audio": src, "src_audio_from": src_from, "src_audio_to": src_to,
                            "reference_audio": ref, "reference_audio_from": ref_from,
                            "reference_audio_to": ref_to, "task_type": task_type, "repainting_start": start,
                            "repainting_end": end, "audio_cover_strength": strength, "track_name": track})


def _flow_edit_controls() -> dict:
    """Flow-edit: morph the source song from what it is (the source caption and lyrics) toward the form's
    caption and lyrics (text2music with a source, cover, cover-nofsq; base, sft and XL models)."""
    gr.Markdown("**Flow-edit** (base/sft models; task text2music, cover or cover-nofsq): describe the source "
                "song here; the caption and lyrics above are what it becomes. The edit runs over the steps "
                "from n_min to n_max (fractions of the schedule); n_avg noise samples are averaged per step.")
    with gr.Row():
        morph = gr.Checkbox(value=START["flow_edit_morph"], label="Flow-edit the source", elem_id="flow-edit-morph")
        caption = gr.Textbox(label="Source caption", placeholder="what the source song is", lines=2,
                             elem_id="flow-edit-source-caption")
        lyrics = gr.Textbox(label="Source lyrics", placeholder="the source song's lyrics", lines=2,
                            elem_id="flow-edit-source-lyrics")
    with gr.Row():
        n_min = gr.Textbox(label="n_min (0-1)", placeholder="empty: 0", elem_id="flow-edit-n-min")
        n_max = gr.Textbox(label="n_max (0-1)", placeholder="empty: 1", elem_id="flow-edit-n-max")
        n_avg = gr.Textbox(label="n_avg (1-8)", placeholder="empty: 1", elem_id="flow-edit-n-avg")
    return {"flow_edit_morph": morph, "flow_edit_source_caption": caption, "flow_edit_source_lyrics": lyrics,
            "flow_edit_n_min": n_min, "flow_edit_n_max": n_max, "flow_edit_n_avg": n_avg}
