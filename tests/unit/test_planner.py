"""The planner without a model: the CoT YAML, its parser, top-p, query hints, and a planner that is gone."""

import pytest
import torch

from acestep_worker.errors import PlannerUnavailableError
from transformers import RepetitionPenaltyLogitsProcessor

from acestep_worker.models.planner.decoding import SamplingParams, filter_logits, penalize_repeats, sample_tokens
from acestep_worker.models.planner.metadata import Metadata, PlannerOutputError, cot_text, parse_cot
from acestep_worker.pipeline.plan import PlannerWork
from acestep_worker.pipeline.planner_pass import PlannerInputs, planner_pass, query_hints
from acestep_worker.pipeline.progress import ProgressTracker
from acestep_worker.schema.request import parse


def test_cot_yaml_folds_long_captions_and_sorts_keys():
    meta = Metadata(bpm=92, duration=200, keyscale="G major", language="en", timesignature="4/4",
                    caption="A warm and intimate acoustic folk ballad featuring fingerpicked guitar, soft brushed "
                            "drums, gentle upright bass and a tender male vocal that builds to an emotional chorus")
    assert cot_text(meta) == (
        "<think>\nbpm: 92\ncaption: A warm and intimate acoustic folk ballad featuring fingerpicked guitar, soft\n"
        "  brushed drums, gentle upright bass and a tender male vocal that builds to an emotional\n  chorus\n"
        "duration: 200\nkeyscale: G major\nlanguage: en\ntimesignature: 4\n</think>")
    assert cot_text(Metadata()) == "<think>\n\n</think>"


def test_parse_reads_continuations_and_rejects_malformed_values():
    meta = parse_cot("<think>\nbpm: 118\ncaption: An upbeat\n  track.\nduration: 180\nkeyscale: A minor\n"
                     "language: en\ntimesignature: 4\n<|im_end|>")
    assert meta == Metadata(118, "An upbeat track.", 180, "A minor", "en", "4")
    for text, field in [("bpm: 12\n", "bpm"), ("duration: 700\n", "duration"), ("keyscale: H major\n", "keyscale"),
                        ("language: xx\n", "language"), ("timesignature: 5\n", "timesignature"),
                        ("bpm: fast\n", "bpm")]:
        with pytest.raises(PlannerOutputError, match=field):
            parse_cot("<think>\n" + text)


def test_penalty_is_transformers_rule_bit_for_bit():
    """Seen positive logits divided, seen negative ones multiplied, zero and -inf unchanged, unseen untouched."""
    logits = torch.tensor([[2.5, -1.5, 0.0, float("-inf"), 0.7, -0.3], [0.1, 0.2, -0.4, 3.0, float("-inf"), 1.0]])
    history = torch.tensor([[0, 1, 2, 3, 1], [3, 3, 2, 4, 4]])
    seen = torch.zeros_like(logits, dtype=torch.bool).scatter(1, history, True)
    expected = RepetitionPenaltyLogitsProcessor(penalty=1.3)(history, logits.clone())
    assert torch.equal(penalize_repeats(logits, seen, 1.3), expected)
    assert penalize_repeats(logits, seen, 1.3)[0, 0] == torch.tensor(2.5) / 1.3
    assert torch.equal(logits[:, 5], expected[:, 5])


def test_request_sampling_fields_reach_the_planner():
    given = PlannerInputs.from_request(parse({"lm_repetition_penalty": 1.2, "constrained_decoding": False}))
    assert (given.params.repetition_penalty, given.params.constrained) == (1.2, False)
    assert PlannerInputs.from_request(parse({})).params == SamplingParams(temperature=0.85, top_k=0, top_p=0.9)


def test_unconstrained_text_keeps_valid_values_and_drops_the_rest():
    text = "<think>\nbpm: 900\nkeyscale: C major\nlanguage: xx\n</think>"
    assert parse_cot(text, strict=False) == Metadata(keyscale="C major")
    with pytest.raises(PlannerOutputError, match="bpm"):
        parse_cot(text)


def test_unconstrained_unguided_sampling_takes_top_p_after_the_temperature():
    """Upstream's generate() path: at temperature 2 the nucleus of [3, 2, 0] at p=0.6 holds two tokens, on the
    unscaled logits only the first; its own loops (guided or constrained) filter first."""
    logits = torch.tensor([[3.0, 2.0, 0.0]])
    free = SamplingParams(temperature=2.0, top_p=0.6, cfg_scale=1.0, constrained=False)
    draws = {int(sample_tokens(logits, free, [torch.Generator().manual_seed(s)])[0]) for s in range(40)}
    assert draws == {0, 1}
    loop = SamplingParams(temperature=2.0, top_p=0.6, cfg_scale=1.0)
    assert {int(sample_tokens(logits, loop, [torch.Generator().manual_seed(s)])[0]) for s in range(40)} == {0}


def test_top_p_keeps_the_token_that_crosses_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = filter_logits(logits, 0, 0.7) > float("-inf")
    assert kept.tolist() == [[True, True, False, False]]
    assert (filter_logits(logits, 1, 1.0) > float("-inf")).tolist() == [[True, False, False, False]]


@pytest.mark.parametrize("query,language,instrumental", [
    ("a soft Bengali love song", "bn", False), ("Epic orchestral, instrumental", None, True),
    ("guitar solo", None, True), ("français ballad", "fr", False), ("pop en français", "en", False), ("it rocks", "it", False),
])
def test_query_hints(query, language, instrumental):
    assert query_hints(query) == (language, instrumental)


def test_a_planner_gone_since_the_job_was_planned_is_a_clear_error_not_a_crash():
    """A failed /v1/init switch can leave no planner after a job asking for one was planned."""
    inputs = PlannerInputs.from_request(parse({"thinking": True, "duration": 10}))
    with pytest.raises(PlannerUnavailableError, match="needs the 5 Hz planner") as refused:
        planner_pass(PlannerWork(runs=True, writes_codes=True), inputs, None, [1], ProgressTracker(None, None))
    assert refused.value.field == "thinking"
