"""The planner's repetition penalty and `constrained_decoding: false` on the tiny LM, checked against
transformers' `RepetitionPenaltyLogitsProcessor` applied to the logits the loop actually saw."""

import pytest
import torch
from transformers import RepetitionPenaltyLogitsProcessor

from acestep_worker.doors.serverless import run_job
from acestep_worker.models.planner.constraints import CotConstraint
from acestep_worker.models.planner.decoding import PairedDecoder, RepetitionPenalty, SamplingParams
from acestep_worker.models.planner.lm import VALID_CODES
from acestep_worker.models.planner.metadata import FIELD_ORDER, Metadata
from acestep_worker.models.planner.planner import SongText

GREEDY = SamplingParams(temperature=0.0, top_k=0, top_p=1.0, cfg_scale=2.0)
TEXT = SongText("lofi piano", "[Verse]\nrain on the window")


def _with(params, **changes):
    return SamplingParams(**{**params.__dict__, **changes})


@pytest.fixture
def recorded(monkeypatch):
    """Every (decoder, guided logits) pair the loop reads, in order."""
    seen = []
    original = PairedDecoder.guided_logits

    def record(self, scale):
        logits = original(self, scale)
        seen.append((self, logits.clone()))
        return logits

    monkeypatch.setattr(PairedDecoder, "guided_logits", record)
    return seen


def _reference_token(processor, decoder, written, logits):
    """Upstream's step for one row set: the conditional rows as fed plus what they wrote, the HF processor
    over the guided logits, then greedy."""
    ids = torch.cat([decoder.cond_ids.cpu(), torch.tensor(written, dtype=torch.long).view(decoder.batch, -1)], dim=1)
    return processor(ids, logits.clone())


def test_penalty_one_skips_the_op_and_changes_nothing(planner):
    decoder = PairedDecoder(planner.lm, [planner.lm.encode("hello")], None, 4)
    assert RepetitionPenalty.for_decoder(decoder, 1.0) is None
    base = planner.write_codes(TEXT, Metadata(), 6, [3, 4], SamplingParams())
    assert planner.write_codes(TEXT, Metadata(), 6, [3, 4], SamplingParams(repetition_penalty=1.0)) == base
    meta = planner.write_metadata(TEXT, Metadata(), SamplingParams(), 5)
    assert planner.write_metadata(TEXT, Metadata(), SamplingParams(repetition_penalty=1.0), 5).ids == meta.ids


def test_penalised_greedy_codes_follow_the_hf_processor_over_prompt_and_output(planner, recorded):
    first = planner.lm.ids.first_code
    plain = planner.write_codes(TEXT, Metadata(bpm=90), 8, [1, 2], GREEDY)
    recorded.clear()
    codes = planner.write_codes(TEXT, Metadata(bpm=90), 8, [1, 2], _with(GREEDY, repetition_penalty=2.0))
    assert codes != plain  # the penalty moves greedy choices on this model
    processor = RepetitionPenaltyLogitsProcessor(penalty=2.0)
    assert len(recorded) == 40
    for step, (decoder, logits) in enumerate(recorded):
        written = [[first + c for c in row[:step]] for row in codes]
        expected = _reference_token(processor, decoder, written, logits)[:, first:first + VALID_CODES].argmax(-1)
        assert expected.tolist() == [row[step] for row in codes], step


def test_penalised_unconstrained_text_follows_the_hf_processor(planner, recorded):
    params = _with(GREEDY, repetition_penalty=2.0, constrained=False)
    plain = planner.write_metadata(TEXT, Metadata(), _with(params, repetition_penalty=1.0), 0)
    recorded.clear()
    result = planner.write_metadata(TEXT, Metadata(), params, 0)
    assert result.ids != plain.ids
    processor = RepetitionPenaltyLogitsProcessor(penalty=2.0)
    for step, (decoder, logits) in enumerate(recorded):
        expected = _reference_token(processor, decoder, [result.ids[:step]], logits).argmax(-1)
        assert int(expected) == result.ids[step], step


def test_the_penalty_runs_after_the_constraint_mask(planner, recorded):
    """Constrained and penalised, the greedy choice is the argmax of the processor over the masked logits
    (replayed through a fresh machine), so every token is still one the machine allows."""
    params = _with(GREEDY, repetition_penalty=2.0)
    plain = planner.write_metadata(TEXT, Metadata(), GREEDY, 0)
    recorded.clear()
    result = planner.write_metadata(TEXT, Metadata(), params, 0)
    assert result.ids != plain.ids
    machine = CotConstraint(planner.vocab, list(FIELD_ORDER), Metadata())
    processor = RepetitionPenaltyLogitsProcessor(penalty=2.0)
    for step, token in enumerate(result.ids):
        decoder, logits = recorded[step]
        masked = machine.mask(logits[0])
        expected = _reference_token(processor, decoder, [result.ids[:step]], masked[None]).argmax(-1)
        assert int(expected) == token, step
        machine.advance(token)
    assert machine.done
