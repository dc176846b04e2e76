"""LRC timestamps, alignment scores and best-of-N on the tiny checkpoints, through the engine and every door.

The tiny tree's config names alignment heads in both of its DiT layers (dev/tiny.py), so every path
runs; its random weights make the timings themselves meaningless, so the tests check their form, their
order and what they cost (one extra, partial DiT call), not where the words fall."""

import json
import re

import pytest
import torch

from acestep_worker.doors import cli
from acestep_worker.doors.pod.api import result_items
from acestep_worker.doors.serverless import run_job
from acestep_worker.errors import InputError
from acestep_worker.models.dit.attention_capture import cross_attention
from acestep_worker.schema.request import TimedRequest, parse

from ..support.audio import B64

LYRICS = "[Verse]\nneon rain on the city\nwe keep moving\n\n[Chorus]\nhold on tonight"
LINES = ["[Verse]", "neon rain on the city", "we keep moving", "[Chorus]", "hold on tonight"]
LRC_LINE = re.compile(r"^\[(\d{2}):(\d{2}\.\d{2})\](.+)$")


def _parse_lrc(text):
    rows = [LRC_LINE.match(line) for line in text.splitlines()]
    assert all(rows), text
    return [(int(m[1]) * 60 + float(m[2]), m[3]) for m in rows]


def _check_lrc(text, duration):
    rows = _parse_lrc(text)
    assert [line for _, line in rows] == LINES
    times = [t for t, _ in rows]
    assert times == sorted(times) and 0 <= times[0] and times[-1] <= duration


def _dit_inputs(dit, frames=20, tokens=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = dit.transformer.config.encoder_hidden_size if hasattr(dit.transformer.config, "encoder_hidden_size") \
        else dit.transformer.config.hidden_size
    return (torch.randn(1, frames, 64, generator=g), torch.full((1,), 0.125),
            torch.randn(1, tokens, hidden, generator=g), torch.randn(1, frames, 128, generator=g))


def test_captured_probabilities_are_the_attention_the_dit_applies(engine):
    """probabilities x values through the output projection give the cross-attention's own output."""
    dit = engine.models.dit("acestep-v15-turbo")
    attn = dit.transformer.layers[0].cross_attn
    seen = {}
    handle = attn.register_forward_hook(lambda m, a, kw, out: seen.update(kw, out=out), with_kwargs=True)
    try:
        heads = tuple(range(attn.heads))
        maps = cross_attention(dit, *_dit_inputs(dit), {0: heads, 1: (0,)})
    finally:
        handle.remove()
    probs = maps[0]  # [1, heads, frames, tokens]
    assert torch.allclose(probs.sum(-1), torch.ones_like(probs.sum(-1)), atol=1e-5)
    value = attn.to_v(seen["encoder_hidden_states"]).unflatten(-1, (attn.kv_heads, attn.head_dim))
    value = value.repeat_interleave(attn.heads // attn.kv_heads, dim=2).transpose(1, 2)  # [1, heads, tokens, d]
    out = attn.to_out[0]((probs @ value).transpose(1, 2).flatten(2))
    assert torch.allclose(out, seen["out"], atol=1e-5)
    # Keeping only the lyric tokens slices after the softmax over all of them: the same numbers.
    kept = cross_attention(dit, *_dit_inputs(dit), {0: heads, 1: (0,)}, keep=5)
    assert torch.equal(kept[0], probs[..., :5]) and torch.equal(kept[1], maps[1][..., :5])


def test_the_capture_stops_inside_the_deepest_layer_it_reads(engine):
    dit = engine.models.dit("acestep-v15-turbo")
    calls = {"layer1": 0, "out": 0}
    hooks = [dit.transformer.layers[1].register_forward_pre_hook(lambda *_: calls.__setitem__("layer1", 1)),
             dit.transformer.proj_out_conv.register_forward_pre_hook(lambda *_: calls.__setitem__("out", 1))]
    try:
        maps = cross_attention(dit, *_dit_inputs(dit), {0: (1, 2)})
    finally:
        for hook in hooks:
            hook.remove()
    assert set(maps) == {0} and maps[0].shape[1] == 2
    assert calls == {"layer1": 0, "out": 0}


def _count_dit_calls(dit):
    calls = []
    return calls, dit.transformer.register_forward_pre_hook(lambda *_: calls.append(1))


def test_serverless_best_of_n_with_lrc_and_scores_costs_one_extra_dit_call(engine):
    dit = engine.models.dit("acestep-v15-turbo")
    calls, hook = _count_dit_calls(dit)
    try:
        out = run_job(engine, "align-1", {"caption": "test", "lyrics": LYRICS, "duration": 10, "seed": 5,
                                          "batch_size": 3, "keep_best": 2, "auto_lrc": True, "auto_score": True},
                      env={})
    finally:
        hook.remove()
    assert len(calls) == out["params"]["inference_steps"] + 1  # the steps, then one alignment call: no re-diffusion
    results, takes = out["results"], out["params"]["takes"]
    assert len(results) == 2 and out["batch_size"] == len(takes) == 3  # batch_size: the takes made
    assert [t["take"] for t in takes] == [1, 2, 3] and sum(t["kept"] for t in takes) == 2
    by_take = {t["take"]: t for t in takes}
    for rank, song in enumerate(results, start=1):
        _check_lrc(song["lrc"], song["duration"])
        assert song["lrc_source"] == "dit_cross_attention" and song["rank"] == rank
        assert 0 <= song["dit_score"] <= 1 and 0 <= song["lm_score"] <= 1
        assert by_take[song["take"]]["kept"] and by_take[song["take"]]["dit_score"] == song["dit_score"]
        assert song["seed"] == by_take[song["take"]]["seed"]
    assert results[0]["dit_score"] >= results[1]["dit_score"]
    assert len(out["params"]["normalization_gain_db"]) == 2  # per delivered song
    dropped = [t["dit_score"] for t in takes if not t["kept"]]
    assert dropped[0] <= results[1]["dit_score"]
    assert "alignment" in out["timings"]
    files = sorted(p.name for p in engine.settings.output_dir.glob("align-1*"))
    assert files == sorted(r["filename"] for r in results)  # only the kept takes are delivered
    json.dumps(out)


def test_a_job_that_asks_for_nothing_gets_no_alignment(engine):
    out = run_job(engine, "align-none", {"caption": "test", "lyrics": LYRICS, "duration": 10}, env={})
    assert not {"lrc", "lrc_source", "lm_score", "dit_score", "take"} & set(out["results"][0])
    assert "alignment" not in out["timings"] and "takes" not in out["params"]


def test_a_repaint_gets_its_lrc_over_the_edited_song(engine):
    out = run_job(engine, "align-repaint", {"caption": "test", "lyrics": LYRICS, "src_audio": B64, "seed": 3,
                                            "task_type": "repaint", "repainting_start": 0.2, "repainting_end": 0.6,
                                            "auto_lrc": True}, env={})
    song = out["results"][0]
    assert out["task_type"] == "repaint" and song["duration"] == 1.0
    _check_lrc(song["lrc"], song["duration"])
    assert "dit_score" not in song


def test_an_instrumental_request_is_refused_before_any_work(engine):
    dit = engine.models.dit("acestep-v15-turbo")
    calls, hook = _count_dit_calls(dit)
    try:
        with pytest.raises(InputError) as caught:
            run_job(engine, "align-inst", {"caption": "test", "lyrics": "[inst]", "auto_lrc": True}, env={})
    finally:
        hook.remove()
    assert caught.value.field == "auto_lrc" and "auto_lrc aligns the songs' lyrics" in str(caught.value)
    assert calls == []


def test_best_of_n_ranks_takes_made_with_an_adapter(lora_engine):
    out = run_job(lora_engine, "align-lora", {"caption": "test", "lyrics": LYRICS, "duration": 10, "seed": 1,
                                              "batch_size": 2, "keep_best": 1,
                                              "loras": [{"name": "peft-style", "scale": 1.0}]}, env={})
    assert len(out["results"]) == 1 and out["params"]["loras"][0]["format"] == "peft"
    best = max(out["params"]["takes"], key=lambda t: t["dit_score"])
    assert out["results"][0]["take"] == best["take"] and best["kept"]


def test_the_pod_puts_the_lrc_in_each_songs_metas(engine, manager):
    task = manager.submit(parse({"caption": "test", "lyrics": LYRICS, "duration": 10, "auto_lrc": True,
                                 "auto_score": True}, TimedRequest))
    assert task.done.wait(120)
    [item] = result_items(task, "", "")
    _check_lrc(item["metas"]["lrc"], item["duration"])
    assert item["metas"]["lrc_source"] == "dit_cross_attention" and item["metas"]["lyrics"] == LYRICS
    assert 0 <= item["dit_score"] <= 1 and 0 <= item["lm_score"] <= 1


def test_the_cli_writes_each_songs_lrc_beside_it(tiny_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ACESTEP_CONFIG_PATH", str(tiny_root / "acestep-v15-turbo"))
    monkeypatch.setenv("ACESTEP_DEVICE", "cpu")
    monkeypatch.setenv("ACESTEP_LM_MODEL_PATH", "")
    monkeypatch.setenv("ACESTEP_OUTPUT_DIR", str(tmp_path))
    out = tmp_path / "song.wav"
    assert cli.main(["generate", "--lyrics", LYRICS, "--duration", "10", "--lrc", "--score", "-q",
                     "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    _check_lrc((tmp_path / "song.lrc").read_text(encoding="utf-8"), summary["duration_s"])
    assert summary["songs"][0]["lrc_file"] == str(tmp_path / "song.lrc")
    assert 0 <= summary["songs"][0]["dit_score"] <= 1


@pytest.mark.parametrize("fields", [{"auto_lrc": True}, {"keep_best": 1}])
def test_the_page_sends_the_alignment_controls(fields):
    from acestep_worker.doors.pod.page.form import _fields
    from acestep_worker.doors.pod.page.inputs import STARTING_VALUES

    values = dict(STARTING_VALUES, lyrics=LYRICS, **{k: (str(v) if k == "keep_best" else v) for k, v in fields.items()})
    sent = _fields(values)
    assert {k: sent[k] for k in fields} == {k: (str(v) if k == "keep_best" else v) for k, v in fields.items()}
    assert parse(sent).alignment_fields == tuple(fields)


def test_a_best_of_n_song_keeps_its_own_retake_seed(engine):
    out = run_job(engine, "align-retake", {"caption": "test", "lyrics": LYRICS, "duration": 10, "seed": 11,
                                           "retake_seed": "20,21,22", "retake_variance": 0.3, "batch_size": 3,
                                           "keep_best": 1}, env={})
    [song] = out["results"]
    assert song["retake_seed"] == 20 + song["take"] - 1 and song["seed"] == 11 + song["take"] - 1
