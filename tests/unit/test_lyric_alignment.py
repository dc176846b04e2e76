"""Lyric alignment without a model: upstream's DTW rule, the LRC writer, the request fields and their
refusals, and best-of-N's ranking. (Parity with upstream's own code: the align_* goldens.)"""

import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from acestep_worker.errors import InputError
from acestep_worker.models.dit.attention_capture import DEFAULT_ALIGNMENT_HEADS, alignment_heads, usable_heads
from acestep_worker.models.variants import detect_variant
from acestep_worker.pipeline.alignment_math import _median, dtw, lyric_token_mask
from acestep_worker.pipeline.best_of import best_of
from acestep_worker.pipeline.lrc import TimedLine, format_lrc, lrc_timestamp, timed_lines, timed_tokens, token_texts
from acestep_worker.pipeline.plan import EngineFacts, resolve
from acestep_worker.schema.request import parse, unused_fields

LRC_LINE = re.compile(r"^\[(\d{2}):(\d{2}\.\d{2})\](.*)$")


def _reference_dtw(x):
    """Upstream's double loop as written (column-major, float32 cost, the same tie rule)."""
    n, m = x.shape
    cost = np.ones((n + 1, m + 1), dtype=np.float32) * np.inf
    trace = -np.ones((n + 1, m + 1), dtype=np.float32)
    cost[0, 0] = 0
    for j in range(1, m + 1):
        for i in range(1, n + 1):
            c0, c1, c2 = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
            if c0 < c1 and c0 < c2:
                c, t = c0, 0
            elif c1 < c0 and c1 < c2:
                c, t = c1, 1
            else:
                c, t = c2, 2
            cost[i, j] = x[i - 1, j - 1] + c
            trace[i, j] = t
    trace[0, :], trace[:, 0] = 2, 1
    i, j, path = n, m, []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        t = trace[i, j]
        i, j = (i - 1, j - 1) if t == 0 else (i - 1, j) if t == 1 else (i, j - 1)
    return [p[0] for p in path[::-1]], [p[1] for p in path[::-1]]


@pytest.mark.parametrize("shape,ties", [((7, 11), False), ((12, 5), False), ((6, 9), True), ((1, 4), False)])
def test_the_vectorised_dtw_takes_upstreams_path_ties_included(shape, ties):
    rng = np.random.default_rng(shape[0] * 31 + shape[1])
    x = rng.integers(-2, 2, shape).astype(np.float64) if ties else rng.normal(size=shape)
    rows, cols = dtw(x)
    assert (rows.tolist(), cols.tolist()) == _reference_dtw(x)
    assert rows.dtype == np.int32 and rows[-1] == shape[0] - 1 and cols[-1] == shape[1] - 1


def test_the_median_matches_torch_quantile_for_odd_and_even_lengths():
    for length in (5, 6):
        x = torch.randn(3, 4, length)
        assert torch.equal(_median(x, -1), torch.quantile(x, 0.5, dim=-1, keepdim=True))
        assert torch.equal(_median(x, -2), torch.quantile(x, 0.5, dim=-2, keepdim=True))


def test_lrc_timestamps_are_minutes_and_hundredths():
    assert [lrc_timestamp(s) for s in (0.0, 5.126, 65.5, 600.0)] == ["[00:00.00]", "[00:05.13]", "[01:05.50]",
                                                                     "[10:00.00]"]
    lines = [TimedLine("[Verse]", 0.0, 1.0), TimedLine("neon rain", 1.24, 3.0)]
    assert format_lrc(lines) == "[00:00.00][Verse]\n[00:01.24]neon rain"


def test_tokens_the_path_skips_start_where_the_last_ended_and_lines_break_at_newlines():
    texts = ["la", " la", "\n", "oh", "\n"]

    def decode(ids):
        return "".join(texts[i] for i in ids)

    rows, cols = np.array([0, 0, 1, 3, 4]), np.array([0, 1, 2, 3, 4])  # token 2 never visited
    tokens = timed_tokens(range(5), texts, rows, cols, frames=5, duration_s=10.0)
    assert [(t.start, t.end) for t in tokens] == [(0.0, 2.0), (4.0, 4.0), (4.0, 4.0), (6.0, 6.0), (8.0, 8.0)]
    assert [(line.text, line.start) for line in timed_lines(tokens, decode)] == [("la la", 0.0), ("oh", 6.0)]


def test_token_texts_follow_upstreams_incremental_decoding_of_split_characters():
    raw = [b"caf", b"\xc3", b"\xa9", b"!"]  # a byte-level tokenizer splits "\xe9" in two

    def decode(ids):
        return b"".join(raw[i] for i in ids).decode("utf-8", errors="replace")

    # The half character decodes as U+FFFD; the token completing it adds fewer bytes than that: "".
    assert token_texts([0, 1, 2, 3], decode) == ["caf", "\ufffd", "", "!"]


def test_structure_tags_are_not_sung():
    assert lyric_token_mask(["[", "Verse", "]", "\n", "la", " [x]", "oh"]).tolist() == [0, 0, 0, 1, 1, 0, 1]


def test_alignment_heads_come_from_the_config_else_upstreams_default():
    assert alignment_heads({}) == DEFAULT_ALIGNMENT_HEADS
    assert alignment_heads({"lyric_alignment_layers_config": {"10": [1, 31]}}) == {10: (1, 31)}
    assert alignment_heads({"lyric_alignment_layers_config": {"x": [1]}}) == DEFAULT_ALIGNMENT_HEADS
    assert usable_heads(DEFAULT_ALIGNMENT_HEADS, 4, 8) == {2: (6,)}  # layer 3's heads 10, 11 lie past 8


# -- the request ------------------------------------------------------------------------------------

FACTS = EngineFacts(detect_variant("acestep-v15-turbo", {"is_turbo": True}), {"acestep-v15-turbo": "turbo"}, False)


def test_upstreams_names_and_ours_are_accepted():
    request = parse({"lyrics": "la", "autoLrc": True, "get_scores": True, "batch_size": 4, "keepBest": 2,
                     "rank_by": "lm_score"})
    assert (request.auto_lrc, request.auto_score, request.keep_best, request.rank_by) == (True, True, 2, "lm_score")
    assert parse({"lyrics": "la", "return_lrc": True}).auto_lrc
    plan = resolve(request, FACTS)
    assert plan.alignment.lrc and plan.alignment.scores and plan.alignment.steps == plan.steps


def test_keep_best_alone_computes_the_scores_it_ranks_by():
    plan = resolve(parse({"lyrics": "la", "batch_size": 3, "keep_best": 1}), FACTS)
    assert plan.alignment.scores and not plan.alignment.lrc


@pytest.mark.parametrize("fields,name,fragment", [
    ({"lyrics": "", "auto_lrc": True}, "auto_lrc", "has none"),
    ({"lyrics": "[Instrumental]", "auto_score": True}, "auto_score", "has none"),
    ({"lyrics": "la", "batch_size": 2, "keep_best": 3}, "keep_best", "must not exceed batch_size"),
])
def test_what_cannot_be_aligned_is_refused_at_submission_with_a_sentence(fields, name, fragment):
    with pytest.raises(InputError) as caught:
        resolve(parse(fields), FACTS)
    assert caught.value.field == name and fragment in str(caught.value) and len(str(caught.value)) < 300


def test_bad_values_name_the_field():
    for fields, name in (({"rank_by": "loudness"}, "rank_by"), ({"keep_best": 0}, "keep_best")):
        with pytest.raises(InputError) as caught:
            parse(fields)
        assert caught.value.field == name


def test_score_scale_is_used_and_rank_by_may_name_the_quality_score():
    request = parse({"score_scale": 0.7, "keep_best": 1, "rank_by": "quality_score"})
    assert "score_scale" not in unused_fields(request) and request.score_scale == 0.7
    assert request.rank_by == "quality_score"


# -- best-of-N --------------------------------------------------------------------------------------

def _take(seed, score):
    return SimpleNamespace(seed=seed, extras={} if score is None else {"dit_score": score, "lm_score": 0.5})


def test_best_of_keeps_the_highest_scores_best_first_and_lists_every_take():
    takes = [_take(1, 0.2), _take(2, None), _take(3, 0.9), _take(4, 0.2)]
    kept, ranking = best_of(takes, 2, "dit_score")
    assert [t.seed for t in kept] == [3, 1]  # ties in take order, unscored last
    assert [(r["take"], r["rank"], r["kept"]) for r in ranking] == [(1, 2, True), (2, 4, False), (3, 1, True),
                                                                    (4, 3, False)]
    assert ranking[2]["dit_score"] == 0.9 and kept[0].extras["take"] == 3


def test_without_keep_best_every_take_is_delivered_unranked():
    takes = [_take(1, 0.2), _take(2, 0.3)]
    assert best_of(takes, None, "dit_score") == (takes, None)


def test_lrc_lines_parse():
    text = format_lrc([TimedLine("a", 0.0, 1.0), TimedLine("b", 61.0, 62.0)])
    assert [LRC_LINE.match(line).groups() for line in text.splitlines()] == [("00", "00.00", "a"), ("01", "01.00", "b")]


# -- the clients ------------------------------------------------------------------------------------

def _one_file_client():
    import importlib.util

    from ..support.repo import REPO

    spec = importlib.util.spec_from_file_location("generate_music_under_test", REPO / "generate_music.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_both_clients_send_the_alignment_flags_under_the_servers_names():
    from acestep_worker.doors import client

    argv = ["--caption", "x", "--lyrics", "la", "--batch-size", "3", "--lrc", "--score", "--keep-best", "2",
            "--rank-by", "lm_score"]
    expected = {"auto_lrc": True, "auto_score": True, "keep_best": 2, "rank_by": "lm_score"}
    package = client.request_fields(client.build_parser().parse_args(argv))
    standalone = _one_file_client()
    one_file = standalone.request_fields(standalone.build_parser().parse_args(argv))
    for fields in (package, one_file):
        assert {k: fields[k] for k in expected} == expected
        assert parse(fields).alignment_fields == ("auto_lrc", "auto_score", "keep_best")
    plain = client.request_fields(client.build_parser().parse_args(["--caption", "x"]))
    assert not {"auto_lrc", "auto_score", "keep_best", "rank_by"} & set(plain)


def test_the_clients_write_a_songs_lrc_beside_it(tmp_path):
    from acestep_worker.doors.alignment_flags import write_lrc

    said = []
    _one_file_client().song_extras(tmp_path / "a.mp3", "[00:00.00]la", {"dit_score": 0.5}, said.append)
    assert (tmp_path / "a.lrc").read_text(encoding="utf-8") == "[00:00.00]la\n" and "dit_score 0.5" in said[0]
    assert write_lrc(tmp_path / "b.flac", "[00:01.00]é") == tmp_path / "b.lrc"
    assert write_lrc(tmp_path / "c.mp3", None) is None and not (tmp_path / "c.lrc").exists()


def test_the_inline_budget_counts_only_the_takes_best_of_n_keeps():
    from acestep_worker.delivery.inline import check_deliverable
    from acestep_worker.schema.request import JobRequest

    def check(**fields):
        request = parse({"lyrics": "la", "return_audio_base64": True, "audio_format": "wav", **fields}, JobRequest)
        check_deliverable(request, 20.0, "duration", has_bucket=False, response_limit=20_000_000)

    check(batch_size=4, keep_best=1)  # one 20 s WAV fits the default 8 MB
    with pytest.raises(InputError) as caught:
        check(batch_size=4)
    assert "batch_size 1" in str(caught.value)
    with pytest.raises(InputError) as caught:
        check(batch_size=4, keep_best=3)
    assert "keep_best 1" in str(caught.value)


def test_best_of_n_over_several_stems_is_refused_and_one_stem_is_ranked():
    base = EngineFacts(detect_variant("acestep-v15-base", {"is_turbo": False, "model_version": "base"}),
                       {"acestep-v15-base": "base"}, False)
    fields = {"task_type": "extract", "src_audio": "https://example.com/a.wav", "lyrics": "la", "batch_size": 2,
              "keep_best": 1, "model": "acestep-v15-base"}
    with pytest.raises(InputError) as caught:
        resolve(parse({**fields, "track_name": "vocals,drums"}), base, has_source=True)
    assert caught.value.field == "keep_best" and "2 stems" in str(caught.value)
    assert resolve(parse({**fields, "track_name": "vocals"}), base, has_source=True).alignment.scores
