"""Editing tasks without a model: regions, padding, instructions, task lists per family, reference clips."""

import pytest
import torch

from acestep_worker.errors import InputError
from acestep_worker.pipeline import edit_conditions
from acestep_worker.schema import task_types
from acestep_worker.schema.request import parse

from ..support.audio import decoded_song

SR = 48_000


def test_a_negative_start_pads_the_source_on_the_left():
    region = task_types.region_for(-0.5, 0.5, SR)
    assert region.pad_left_samples == SR // 2 and region.pad_right_samples == 0
    assert (region.start_frame, region.end_frame) == (0, 25)


def test_the_condition_and_the_repaint_injection_pad_and_crop_the_source_alike():
    silence = torch.arange(8.0)[:, None].repeat(1, 4)  # frame i of silence holds i
    latents = torch.full((3, 4), -1.0)
    source = edit_conditions.Source(torch.zeros(2, 3 * 1920), latents, 3 * 1920 / SR, "", task_types.Region(0, 0, 1, 2))
    padded = edit_conditions.source_at_length(source, silence, 8)
    assert padded[:3].eq(-1).all() and padded[3:, 0].tolist() == [0, 1, 2, 3, 4]  # silence restarts at frame 0
    assert edit_conditions.source_at_length(source, silence, 2).shape == (2, 4)  # a longer source is cropped
    edit = edit_conditions.EditInputs(task_types.TASKS["repaint"], source=source)
    for frames in (8, 2):
        clean = edit_conditions.source_at_length(source, silence, frames)  # what repaint injects
        src, _, repaint = edit_conditions.source_rows(edit, silence, frames)  # what the model conditions on
        assert torch.equal(src[~repaint], clean[~repaint]) and src[1].eq(1).all()  # the range: silence's frame
    assert latents.eq(-1).all()  # silencing the range leaves the source itself alone


@pytest.mark.parametrize("start, end, expected", [(0.0, None, (0, 25)), (0.0, -1, (0, 25)), (0.33, 0.61, (8, 15)),
                                                  (0.99, 1.0, (24, 25))])
def test_seconds_become_frames_by_flooring(start, end, expected):
    region = task_types.region_for(start, end, SR)
    assert (region.start_frame, region.end_frame) == expected


@pytest.mark.parametrize("fields, field", [
    ({"repainting_start": 5, "repainting_end": 2}, "repainting_end"),
    ({"track_name": "kazoo"}, "track_name"),
    ({"track_classes": ["drums", "theremin"]}, "track_classes"),
    ({"repaint_mode": "wild"}, "repaint_mode"),
    ({"audio_cover_strength": 1.5}, "audio_cover_strength"),
    ({"dcw_wavelet": "db4"}, "dcw_wavelet"),
])
def test_bad_editing_fields_name_the_field(fields, field):
    with pytest.raises(InputError) as err:
        parse({"task_type": "repaint", **fields})
    assert err.value.field == field


def test_instructions_follow_upstream_wording():
    assert task_types.instruction_for("extract", "backing_vocals") == "Extract the BACKING_VOCALS track from the audio:"
    assert task_types.instruction_for("lego") == "Generate the track based on the audio context:"
    assert task_types.instruction_for("complete", track_classes=("bass", "drums")) == \
        "Complete the input track with BASS | DRUMS:"
    assert task_types.instruction_for("cover-nofsq") == task_types.instruction_for("cover")
    assert task_types.instruction_for("repaint", override="Make it brighter") == "Make it brighter:"


def test_model_families_support_upstream_task_lists():
    four = ["text2music", "cover", "cover-nofsq", "repaint"]
    assert task_types.supported_task_types("turbo") == four and task_types.supported_task_types("xl-sft") == four
    assert task_types.supported_task_types("xl-base") == list(task_types.TASK_TYPES)


def test_reference_slicing_is_reproducible_for_a_seed():
    audio = decoded_song(40.0)
    a, b = edit_conditions.reference_clip(audio, seed=7), edit_conditions.reference_clip(audio, seed=7)
    c = edit_conditions.reference_clip(audio, seed=8)
    assert a.shape == (2, 30 * SR) and torch.equal(a, b) and not torch.equal(a, c)


def test_a_short_reference_is_tiled_to_thirty_seconds():
    assert edit_conditions.reference_clip(decoded_song(4.0), seed=1).shape == (2, 30 * SR)
