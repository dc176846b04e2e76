"""Several stems from one job: how track_name is read (one name, a list, a comma string, the preset), what
is refused by name, and how the plan turns the stems into rows (stem x take) and the fewest DiT batches."""

import pytest

from acestep_worker.errors import InputError
from acestep_worker.models.variants import detect_variant
from acestep_worker.pipeline.plan import EngineFacts, resolve
from acestep_worker.schema import task_types
from acestep_worker.schema.request import JobRequest, parse

SOURCE = "https://example.com/mix.wav"


def _extract(track_name, **fields):
    return parse({"task_type": "extract", "track_name": track_name, **fields})


def _plan(**fields):
    facts = EngineFacts(detect_variant("acestep-v15-base", {}), {"acestep-v15-base": "base"}, False)
    request = parse({"task_type": "extract", "src_audio": SOURCE, "seed": 7, **fields}, JobRequest)
    return resolve(request, facts)


@pytest.mark.parametrize("sent, stems", [
    ("drums", ("drums",)),
    (" Drums ", ("drums",)),
    (["vocals", "drums", "bass", "guitar"], ("vocals", "drums", "bass", "guitar")),
    ("vocals, DRUMS,bass", ("vocals", "drums", "bass")),
    ("vocals+instrumental", ("vocals", "instrumental")),
    ("vocals instrumental", ("vocals", "instrumental")),  # the preset through a urlencoded form: "+" is a space
    (["drums", "vocals+instrumental", "drums"], ("drums", "vocals", "instrumental")),  # each once, in order
    ("instrumental", ("instrumental",)),
    ('["vocals", "bass"]', ("vocals", "bass")),  # a form field holding a JSON list
    ("", None),
])
def test_track_name_takes_one_name_a_list_a_comma_string_or_the_preset(sent, stems):
    assert _extract(sent).track_name == stems
    assert parse({"task_type": "extract", "trackName": sent}).track_name == stems  # upstream's alias


@pytest.mark.parametrize("sent", ["kazoo", ["vocals", "kazoo"], "vocals,,kazoo", 3, ["vocals", 3], {"a": 1}, "[vocals"])
def test_an_unknown_track_name_is_refused_naming_the_field_and_the_accepted_names(sent):
    with pytest.raises(InputError) as refused:
        _extract(sent)
    assert refused.value.field == "track_name"
    message = str(refused.value)
    assert all(name in message for name in task_types.TRACK_NAMES) and "vocals+instrumental" in message


@pytest.mark.parametrize("task", ["text2music", "cover", "repaint", "complete"])
def test_several_stems_are_refused_for_tasks_that_make_one_song_per_take(task):
    with pytest.raises(InputError) as refused:
        parse({"task_type": task, "track_name": "vocals,drums"})
    assert refused.value.field == "track_name"
    assert "only task_type extract and lego make several stems in one job" in str(refused.value)
    parse({"task_type": task, "track_name": "vocals"})  # one name stays accepted everywhere, as upstream


def test_the_instrumental_is_extracts_alone_and_needs_a_source_waveform():
    with pytest.raises(InputError, match="only task_type extract separates") as refused:
        parse({"task_type": "lego", "track_name": "vocals+instrumental"})
    assert refused.value.field == "track_name"
    parse({"task_type": "lego", "track_name": ["bass", "drums"]})  # lego takes several tracks
    with pytest.raises(InputError, match="leave no source waveform") as refused:
        _plan(track_name="instrumental", audio_code_string="<|audio_code_5|>" * 30)
    assert refused.value.field == "track_name"


def test_a_single_stem_keeps_upstreams_instruction_and_result_shape():
    plan = _plan(track_name="backing_vocals", batch_size=2)
    assert plan.instruction == "Extract the BACKING_VOCALS track from the audio:"
    assert not plan.splits_stems and plan.song_count == 2
    assert [(row.stem, row.seed) for row in plan.rows] == [("backing_vocals", 7), ("backing_vocals", 8)]


def test_the_plan_makes_one_row_per_stem_and_take_with_each_takes_seed_for_every_stem():
    plan = _plan(track_name="vocals,drums,bass,guitar", batch_size=2)
    assert plan.splits_stems and plan.song_count == 8 and plan.stems == plan.extracted
    assert [(row.stem, row.take, row.seed) for row in plan.rows[:4]] == [
        ("vocals", 0, 7), ("vocals", 1, 8), ("drums", 0, 7), ("drums", 1, 8)]
    assert plan.rows[2].instruction == "Extract the DRUMS track from the audio:"
    assert [len(batch) for batch in plan.batches] == [8]  # no limit: one batch


def test_the_instrumental_costs_no_row_of_its_own():
    plan = _plan(track_name="vocals+instrumental")
    assert plan.stems == ("vocals", "instrumental") and plan.extracted == ("vocals",)
    assert [row.stem for row in plan.rows] == ["vocals"] and plan.song_count == 2
    alone = _plan(track_name="instrumental")  # the vocals are made, and only the instrumental is listed
    assert alone.splits_stems and alone.extracted == ("vocals",) and alone.song_count == 1


@pytest.mark.parametrize("rows, limit, sizes", [(4, 4, [4]), (4, 3, [2, 2]), (4, 2, [2, 2]), (4, 1, [1, 1, 1, 1]),
                                                (6, 4, [3, 3]), (7, 3, [3, 2, 2]), (3, 8, [3])])
def test_the_rows_go_in_the_fewest_batches_the_limit_allows_as_even_as_they_divide(rows, limit, sizes):
    stems = ",".join(task_types.TRACK_NAMES[:rows])
    plan = _plan(track_name=stems).with_batch_limit(limit)
    batches = plan.batches
    assert [len(batch) for batch in batches] == sizes
    assert [row for batch in batches for row in batch] == list(plan.rows)  # every row once, in order


def test_lists_are_refused_for_complete_with_where_its_tracks_go():
    with pytest.raises(InputError, match="complete takes its tracks in track_classes"):
        parse({"task_type": "complete", "track_name": ["bass", "drums"]})


def test_an_instruction_with_several_stems_is_refused_as_it_would_make_them_one_song():
    with pytest.raises(InputError, match="would all be the same song") as refused:
        _extract("vocals,drums", instruction="Extract everything:")
    assert refused.value.field == "instruction"
    assert _extract("vocals", instruction="Extract the lead voice:").instruction == "Extract the lead voice:"
