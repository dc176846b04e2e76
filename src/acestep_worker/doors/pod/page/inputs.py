"""The Gradio page's /generate inputs: one ordered table of (name, starting value).

Gradio passes a handler's inputs, and gradio_client takes them, by position. The page builds its
input list and reads the values back by these names (`form.py`, `edit_controls.py`, `lora_controls.py`), and
clients of the page (tests, `bench/page_load.py`) build their positional arguments with
`client_args` by name. Adding a control is one row here plus the component in the layout.

The starting value is what the control shows when the page opens, so it is also what a client
sends for a field it leaves out. Names are the request fields they become where there is one.
Needs no Gradio: a client can build its arguments without importing the page.
"""

from __future__ import annotations

NO_ADAPTER = "(none)"  # the adapter picker's first choice

# In the order Gradio sends them: the form, the editing accordion, the adapter picker.
GENERATE_INPUTS: tuple[tuple[str, object], ...] = (
    ("mode", "custom"),  # "custom" or "simple", the open tab; session state, not sent by clients
    ("description", ""),  # Simple: the planner's sample_query
    ("caption", ""),
    ("lyrics", ""),
    ("duration", 30),
    ("model", None),  # the page shows the engine's default model; None asks for the same
    ("batch_size", 1),
    ("seed", ""),
    ("audio_format", "mp3"),
    ("inference_steps", ""),
    ("guidance_scale", ""),
    ("shift", ""),
    ("bpm", ""),
    ("key_scale", ""),
    ("time_signature", ""),
    ("vocal_language", "auto"),
    ("enable_normalization", True),  # finishing, upstream's defaults (audio/finishing.py)
    ("normalization_db", -1.0),
    ("fade_in_duration", 0.0),
    ("fade_out_duration", 0.0),
    ("retake_seed", ""),
    ("retake_variance", 0.0),
    ("thinking", False),
    ("auto_lrc", False),  # lyric timestamps (LRC) per song
    ("auto_score", False),  # lyric-alignment scores per song
    ("keep_best", ""),  # best-of-N: keep the best K of the songs made ("" keeps all)
    ("analysis", ""),  # "": make songs; else the analysis flag to set (full_analysis_only, ...)
    ("src_audio", None),  # a file path (gradio_client: handle_file(path))
    ("src_audio_from", ""),  # its trim, seconds
    ("src_audio_to", ""),
    ("reference_audio", None),
    ("reference_audio_from", ""),
    ("reference_audio_to", ""),
    ("task_type", "text2music"),
    ("repainting_start", ""),
    ("repainting_end", ""),
    ("audio_cover_strength", ""),
    ("track_name", ()),  # the stems picker: a list of track names (extract, lego)
    ("flow_edit_morph", False),
    ("flow_edit_source_caption", ""),
    ("flow_edit_source_lyrics", ""),
    ("flow_edit_n_min", ""),
    ("flow_edit_n_max", ""),
    ("flow_edit_n_avg", ""),
    ("lora_name", NO_ADAPTER),
    ("lora_scale", 1.0),
)
INPUT_NAMES = tuple(name for name, _ in GENERATE_INPUTS)
STARTING_VALUES = dict(GENERATE_INPUTS)
SESSION_STATE = frozenset({"mode"})  # gradio_client fills gr.State inputs itself


def ordered(components: dict) -> list:
    """The page's components in the table's order; refuses a table and a page that disagree."""
    if set(components) != set(INPUT_NAMES):
        missing, extra = set(INPUT_NAMES) - set(components), set(components) - set(INPUT_NAMES)
        raise RuntimeError(f"the page's /generate controls and GENERATE_INPUTS disagree: missing {sorted(missing)}, "
                           f"not in the table {sorted(extra)}")
    return [components[name] for name in INPUT_NAMES]


def named(values: tuple) -> dict:
    """The values Gradio passed to /generate, by name."""
    if len(values) != len(INPUT_NAMES):
        raise RuntimeError(f"/generate got {len(values)} values for {len(INPUT_NAMES)} inputs")
    return dict(zip(INPUT_NAMES, values))


def client_args(**values) -> list:
    """gradio_client's positional arguments for /generate: the given fields by name, every other
    at its starting value (session state left out)."""
    sent = [name for name in INPUT_NAMES if name not in SESSION_STATE]
    unknown = set(values) - set(sent)
    if unknown:
        raise TypeError(f"a client cannot send /generate {', '.join(sorted(unknown))}; it takes {', '.join(sent)}")
    return [values.get(name, STARTING_VALUES[name]) for name in sent]
