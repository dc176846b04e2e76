"""Upstream's PMI quality score on the tiny planner: the value against a plain-torch restatement of
upstream's formula, score_scale's effect, and the key through the serverless job with and without a planner."""

import math

import pytest
import torch

from acestep_worker.doors.serverless import run_job
from acestep_worker.errors import InputError
from acestep_worker.models.planner.quality import quality_scores
from acestep_worker.schema.request import parse

CODES = [5, 17, 63_999, 0, 1234, 40_000, 7, 7, 9, 300]
LYRICS = "[Verse]\nneon rain on the city\nwe keep moving"
META = {"caption": "synth pop, bright", "bpm": 120, "duration": 10, "keyscale": "C major", "language": "en",
        "timesignature": "4"}


def _logits_and_targets(lm, user_turn, target):
    """Restated: the understanding chat prompt, tokenized alone and with the target; one full forward."""
    system = "# Instruction\nUnderstand the given musical conditions and describe the audio semantics accordingly:\n\n"
    prompt = lm.tokenizer.apply_chat_template([{"role": "system", "content": system},
                                               {"role": "user", "content": user_turn}],
                                              tokenize=False, add_generation_prompt=True)
    n = len(lm.tokenizer(prompt)["input_ids"])
    ids = torch.tensor([lm.tokenizer(prompt + target)["input_ids"]])
    with torch.no_grad():
        logits = lm.model(input_ids=ids.to(lm.device)).logits[0].float().cpu()
    return logits[n - 1:-1], ids[0, n:]


def _expected(lm, scale):
    codes = "".join(f"<|audio_code_{c}|>" for c in CODES)
    scores = {}
    for name in ("bpm", "duration", "keyscale", "language", "timesignature"):
        value = META[name] if name != "timesignature" else "'4'"
        logits, targets = _logits_and_targets(lm, codes, f"<think>\n{name}: {value}\n</think>\n")
        total = 0.0
        for row, token in zip(logits, targets.tolist()):
            top = torch.topk(row, 10).indices.tolist()
            total += 1 - top.index(token) / 10 if token in top else 0.0
        scores[name] = total / len(targets)
    for name, target in (("caption", f"<think>\ncaption: {META['caption']}\n</think>\n"),
                         ("lyrics", f"<think>\n</think>\n# Lyric\n{LYRICS}\n")):
        mean = []
        for user in (codes, "NO USER INPUT"):
            logits, targets = _logits_and_targets(lm, user, target)
            mean.append(torch.log_softmax(logits, -1)[torch.arange(len(targets)), targets].mean().item())
        scores[name] = 1 / (1 + math.exp(-(mean[0] - mean[1]) / scale))
    meta = sum(v for k, v in scores.items() if k not in ("caption", "lyrics")) / 5
    return scores, 0.5 * scores["caption"] + 0.3 * scores["lyrics"] + 0.2 * meta


def test_the_quality_score_is_upstreams_pmi_over_the_planners_logits(planner):
    scores, overall = quality_scores(planner.lm, CODES, LYRICS, META, 0.5)
    expected, expected_overall = _expected(planner.lm, 0.5)
    assert scores.keys() == expected.keys()
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value, abs=1e-6), name
    assert overall == pytest.approx(expected_overall, abs=1e-6)
    assert all(0 <= v <= 1 for v in scores.values())


def test_score_scale_divides_the_pmi_and_leaves_the_recalls_alone(planner):
    sharp, _ = quality_scores(planner.lm, CODES, LYRICS, META, 0.1)
    soft, _ = quality_scores(planner.lm, CODES, LYRICS, META, 2.0)
    for name in ("caption", "lyrics"):  # the PMI itself: scale x logit(score)
        pmi_sharp = 0.1 * math.log(sharp[name] / (1 - sharp[name]))
        assert pmi_sharp == pytest.approx(2.0 * math.log(soft[name] / (1 - soft[name])), abs=1e-5)
        assert abs(sharp[name] - 0.5) > abs(soft[name] - 0.5)
    assert all(sharp[k] == soft[k] for k in ("bpm", "duration", "keyscale", "language", "timesignature"))


def test_other_codes_give_another_score(planner):
    assert quality_scores(planner.lm, CODES, LYRICS, META, 0.5) != quality_scores(planner.lm, CODES[::-1], LYRICS,
                                                                                    META, 0.5)


JOB = {"caption": "synth pop", "lyrics": LYRICS, "duration": 10, "seed": 3, "auto_score": True,
       "thinking": True, "use_cot_caption": False}


def test_serverless_songs_carry_the_quality_score_with_a_planner(planner_engine):
    out = run_job(planner_engine, "pmi-1", {**JOB, "batch_size": 2, "score_scale": 0.3}, env={})
    for song in out["results"]:
        assert 0 <= song["quality_score"] <= 1 and {"caption", "lyrics"} <= set(song["quality_scores"])
        assert "dit_score" in song and "lm_score" in song
    assert out["results"][0]["quality_scores"] != out["results"][1]["quality_scores"]  # each take its own codes
    assert "quality_score" in out["timings"] and "quality_score_unavailable" not in out["params"]
    assert "score_scale" not in out["params"].get("unused", {})


def test_without_codes_or_a_planner_the_score_is_absent_and_params_say_why(planner_engine, engine):
    plain = run_job(planner_engine, "pmi-2", {**JOB, "thinking": False}, env={})
    assert "quality_score" not in plain["results"][0] and "dit_score" in plain["results"][0]
    assert "audio codes" in plain["params"]["quality_score_unavailable"]
    bare = run_job(engine, "pmi-3", {**JOB, "thinking": False}, env={})
    assert "quality_score" not in bare["results"][0]
    assert "planner" in bare["params"]["quality_score_unavailable"]


def test_best_of_n_ranks_by_the_quality_score(planner_engine):
    out = run_job(planner_engine, "pmi-4", {**JOB, "batch_size": 2, "keep_best": 1, "rank_by": "quality_score"},
                  env={})
    takes = out["params"]["takes"]
    assert out["results"][0]["quality_score"] == max(t["quality_score"] for t in takes)


def test_ranking_by_the_quality_score_is_refused_without_a_planner_or_codes(engine, planner_engine):
    ask = {**JOB, "batch_size": 2, "keep_best": 1, "rank_by": "quality_score"}
    for eng, why in ((engine, "this worker has none loaded"), (planner_engine, "reads the songs' audio codes")):
        with pytest.raises(InputError) as caught:
            eng.generate(parse({**ask, "thinking": False}))
        assert caught.value.field == "rank_by" and why in str(caught.value)
