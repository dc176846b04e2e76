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
    assert len(recorded) == len(result.ids)  # every written token was recorded: the loop below checks them all
    for step, (decoder, logits) in enumerate(recorded):
        expected = _reference_token(processor, decoder, [result.ids[:step]], logits).argmax(-1)
        assert int(expected) == result.ids[step], step


def test_the_penalty_runs_after_the_constraint_mask(planner, recorded):
    """Constrained and penalised, the greedy choice is the argmax of the processor over the masked logits
    (replayed through a fresh machine), so every token is still one the machine allows."""
    params, given = _with(GREEDY, repetition_penalty=3.0), Metadata(caption="x")  # the machine leads every field
    plain = planner.write_metadata(TEXT, given, GREEDY, 0)
    recorded.clear()
    result = planner.write_metadata(TEXT, given, params, 0)
    assert result.ids != plain.ids
    machine = CotConstraint(planner.vocab, list(FIELD_ORDER), given)
    processor = RepetitionPenaltyLogitsProcessor(penalty=3.0)
    for step, token in enumerate(result.ids):
        decoder, logits = recorded[step]
        masked = machine.mask(logits[0])
        expected = _reference_token(processor, decoder, [result.ids[:step]], masked[None]).argmax(-1)
        assert int(expected) == token, step
        machine.advance(token)
    assert machine.done


# -- constrained_decoding: false ------------------------------------------------------------------
def _tempt(monkeypatch, token_ids):
    """The model prefers `token_ids` (in order of preference) above everything else at every step."""
    original = PairedDecoder.guided_logits

    def tempting(self, scale):
        logits = original(self, scale).clone()
        for rank, token in enumerate(token_ids):
            logits[:, token] = 1e4 - rank
        return logits

    monkeypatch.setattr(PairedDecoder, "guided_logits", tempting)


def test_unconstrained_codes_keep_what_the_constraint_forbids(planner, monkeypatch):
    first, eos = planner.lm.ids.first_code, planner.lm.ids.eos
    _tempt(monkeypatch, [first + 64_500])  # a code token outside the codebook
    free = planner.write_codes(TEXT, Metadata(), 4, [1], _with(GREEDY, constrained=False))
    kept = planner.write_codes(TEXT, Metadata(), 4, [1], GREEDY)
    assert kept[0] and max(kept[0]) < 64_000 and len(kept[0]) == 20
    # Nothing ends it: the LM writes up to 500 tokens past the 20 codes, as upstream's loop allows.
    assert free[0] == [64_500] * 520
    _tempt(monkeypatch, [eos])
    assert planner.write_codes(TEXT, Metadata(), 4, [1, 2], _with(GREEDY, constrained=False)) == [[], []]
    assert len(planner.write_codes(TEXT, Metadata(), 4, [1], GREEDY)[0]) == 20


def test_unconstrained_metadata_writes_freely_and_keeps_only_valid_values(planner, monkeypatch):
    backtick = planner.lm.encode("`")[0]
    _tempt(monkeypatch, [backtick])
    free = planner.write_metadata(TEXT, Metadata(), _with(GREEDY, constrained=False), 0)
    assert free.ids[0] == backtick and len(free.ids) == 700  # never forced into <think>, no stop written
    assert free.metadata == Metadata()
    constrained = planner.write_metadata(TEXT, Metadata(), GREEDY, 0)
    assert constrained.ids[0] == planner.lm.ids.think_start
    caption = constrained.text.split("caption:", 1)[1].split("\n", 1)[0]
    assert caption and "`" not in caption  # then the model writes what follows the caption, backticks too


def test_unconstrained_metadata_stops_at_the_end_of_the_think_block(planner, monkeypatch):
    written = planner.lm.encode("<think>\nbpm: 777\nkeyscale: C major\n</think>")
    original = PairedDecoder.guided_logits

    def scripted(self, scale):  # the model writes `written`, then would go on with codes
        logits = original(self, scale).clone()
        logits[:, written[min(self.generated, len(written) - 1)]] = 1e4
        return logits

    monkeypatch.setattr(PairedDecoder, "guided_logits", scripted)
    result = planner.write_metadata(TEXT, Metadata(), _with(GREEDY, constrained=False), 0)
    assert result.ids == written
    assert result.metadata == Metadata(keyscale="C major")  # bpm 777 is dropped, not an error


def test_the_fields_are_used_through_the_serverless_job(planner_engine):
    fields = {"caption": "x", "duration": 10, "thinking": True, "inference_steps": 2, "seed": 3,
              "use_cot_caption": False, "lm_temperature": 0, "lm_repetition_penalty": 1.0,
              "constrained_decoding": True}
    outputs = {}
    for name, changes in (("plain", {}), ("penalised", {"lm_repetition_penalty": 2.0}),
                          ("free", {"constrained_decoding": False})):
        out = run_job(planner_engine, f"lm-{name}", {**fields, **changes}, env={})
        assert out["status"] == "completed", out
        assert not {"lm_repetition_penalty", "constrained_decoding"} & set(out["params"].get("unused", {}))
        outputs[name] = out
    assert outputs["plain"]["params"]["planner"]["audio_codes"] == 50
    assert outputs["penalised"]["params"]["planner"]["audio_codes"] == 50
    assert outputs["penalised"]["results"][0]["sha256"] != outputs["plain"]["results"][0]["sha256"]
    assert outputs["free"]["results"][0]["sha256"] != outputs["plain"]["results"][0]["sha256"]
