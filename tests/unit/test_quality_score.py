"""The arithmetic of upstream's PMI quality score (models/planner/quality.py), without a model."""

import math

import pytest
import torch

from acestep_worker.models.planner.quality import (
    field_target,
    lyrics_target,
    mean_log_prob,
    overall_score,
    pmi_to_score,
    top_k_recall,
)


def test_pmi_maps_through_a_sigmoid_of_pmi_over_the_scale():
    assert pmi_to_score(0.0, 0.5) == 0.5
    assert pmi_to_score(1.0, 0.5) == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert pmi_to_score(-1.0, 0.1) == pytest.approx(1 / (1 + math.exp(10.0)))
    assert pmi_to_score(-5000.0, 0.01) == 0.0 and pmi_to_score(5000.0, 0.01) == 1.0  # no overflow


def test_the_overall_score_weighs_caption_lyrics_and_the_metadata_mean():
    assert overall_score({"caption": 0.8, "lyrics": 0.4, "bpm": 0.2, "duration": 0.6}) == pytest.approx(
        0.5 * 0.8 + 0.3 * 0.4 + 0.2 * 0.4)
    assert overall_score({"caption": 0.8, "bpm": 0.3}) == pytest.approx((0.5 * 0.8 + 0.2 * 0.3) / 0.7)
    assert overall_score({"caption": 0.6}) == pytest.approx(0.6)
    assert overall_score({}) == 0.0


def test_top_k_recall_weighs_each_token_by_its_rank():
    logits = torch.tensor([[5.0, 4.0, 3.0, 2.0], [1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.5, -1.0]])
    targets = torch.tensor([0, 1, 2])  # ranks 1, 3 and 2
    assert top_k_recall(logits, targets, k=2) == pytest.approx((1.0 + 0.0 + 0.5) / 3)
    assert top_k_recall(logits, targets, k=4) == pytest.approx((1.0 + 0.5 + 0.75) / 3)
    assert top_k_recall(logits[:0], targets[:0]) == 0.0


def test_mean_log_prob_is_the_mean_of_the_targets_log_softmax():
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(3.0), 0.0]])
    assert mean_log_prob(logits, torch.tensor([1, 1])) == pytest.approx((math.log(0.75) + math.log(0.25)) / 2)
    assert mean_log_prob(logits[:0], torch.tensor([], dtype=torch.long)) == -math.inf


def test_targets_are_written_as_the_planners_chain_of_thought():
    assert field_target("bpm", 120) == "<think>\nbpm: 120\n</think>\n"
    assert field_target("timesignature", "4") == "<think>\ntimesignature: '4'\n</think>\n"
    assert field_target("keyscale", "C major") == "<think>\nkeyscale: C major\n</think>\n"
    assert lyrics_target("la la") == "<think>\n</think>\n# Lyric\nla la\n"
