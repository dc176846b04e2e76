"""The 5 Hz planner on the tiny LM: prompts, the constrained CoT, audio codes, and the modes wired through
the engine."""

import json
import shutil

import numpy as np
import pytest
import torch

from acestep_worker.errors import CheckpointError, InputError, PlannerUnavailableError
from acestep_worker.models.compile_policy import apply_compile_policy
from acestep_worker.models.planner.chat_prompts import codes_prompts, cot_prompts, format_prompt, sample_prompt
from acestep_worker.models.planner.constraints import CotConstraint
from acestep_worker.models.planner.decoding import PairedDecoder, SamplingParams
from acestep_worker.models.planner.lm import PlannerLM
from acestep_worker.models.planner.metadata import KEYSCALES, Metadata, cot_text
from acestep_worker.models.planner.planner import SongText
from acestep_worker.pipeline.planner_services import format_input
from acestep_worker.schema.request import parse
from acestep_worker.schema.values import LANGUAGES

CAPTION = "upbeat synth-pop with bright analog synths"
LYRICS = "[Verse 1]\nCity lights are calling"
SYSTEM = "<|im_start|>system\n# Instruction\nGenerate audio semantic tokens based on the given conditions:\n\n<|im_end|>\n"
USER = f"<|im_start|>user\n# Caption\n{CAPTION}\n\n# Lyric\n{LYRICS}\n<|im_end|>\n"
FAST = SamplingParams()
# -- prompts, byte for byte ------------------------------------------------------------------------
def test_metadata_prompts(planner):
    cond, uncond = cot_prompts(planner.lm, CAPTION, LYRICS, "NO USER INPUT")
    assert cond == SYSTEM + USER + "<|im_start|>assistant\n"
    assert uncond == SYSTEM + f"<|im_start|>user\n# Lyric\n{LYRICS}\n<|im_end|>\n<|im_start|>assistant\n"
    _, negative = cot_prompts(planner.lm, CAPTION, LYRICS, "harsh noise")
    assert "# Caption\nharsh noise\n\n# Lyric" in negative


def test_codes_prompts(planner):
    meta = Metadata(bpm=118, caption="An upbeat synth-pop track with bright analog synths and punchy drums.",
                    duration=180, keyscale="A minor", language="en", timesignature="4")
    cond, uncond = codes_prompts(planner.lm, CAPTION, LYRICS, cot_text(meta), "NO USER INPUT")
    assert cond == SYSTEM + USER + ("<|im_start|>assistant\n<think>\nbpm: 118\ncaption: An upbeat synth-pop track "
                                    "with bright analog synths and punchy drums.\nduration: 180\nkeyscale: A minor\n"
                                    "language: en\ntimesignature: 4\n</think>\n\n<|im_end|>\n")
    assert uncond == SYSTEM + USER + "<|im_start|>assistant\n<think>\n\n</think>\n\n<|im_end|>\n"


def test_format_and_sample_prompts(planner):
    text = format_prompt(planner.lm, "Latin pop, reggaeton", "[Verse 1]\nTengo un nudo")
    assert text.endswith("<|im_start|>user\n# Caption\nLatin pop, reggaeton\n\n# Lyric\n[Verse 1]\nTengo un nudo"
                         "<|im_end|>\n<|im_start|>assistant\n")
    assert "Format the user's input into a more detailed and specific musical description:\n\n" in text
    assert "# Lyric\n[Instrumental]<|im_end|>" in format_prompt(planner.lm, "", "")
    sample = sample_prompt(planner.lm, "a soft Bengali love song", False)
    assert sample.endswith("<|im_start|>user\na soft Bengali love song\n\ninstrumental: false<|im_end|>\n"
                           "<|im_start|>assistant\n")


# -- the constraint machine, token by token -------------------------------------------------------
def _allowed(constraint, vocab_size):
    masked = constraint.mask(torch.zeros(vocab_size))
    return set(torch.nonzero(masked > float("-inf")).flatten().tolist())


def _feed(constraint, text, lm):
    for token in lm.encode(text):
        allowed = _allowed(constraint, lm.vocab_size)
        assert token in allowed, f"{lm.decode([token])!r} refused while feeding {text!r}"
        constraint.advance(token)


def test_numeric_values_end_only_when_complete(planner):
    lm, vocab = planner.lm, planner.vocab
    c = CotConstraint(vocab, ["bpm", "duration"])
    _feed(c, "<think>\nbpm:", lm)
    assert _allowed(c, lm.vocab_size) == {lm.encode(" ")[0]}  # the value starts with its space
    _feed(c, " 3", lm)
    assert vocab.newline not in _allowed(c, lm.vocab_size)  # 3 is not a bpm
    _feed(c, "0", lm)
    assert _allowed(c, lm.vocab_size) == {vocab.newline, lm.encode("0")[0]}  # 30 done, or 300
    _feed(c, "0", lm)
    assert _allowed(c, lm.vocab_size) == {vocab.newline}  # 3000 would exceed 300
    _feed(c, "\nduration: 6", lm)
    assert vocab.newline not in _allowed(c, lm.vocab_size)


def test_keyscale_timesignature_and_language_whitelists(planner):
    lm, vocab = planner.lm, planner.vocab
    c = CotConstraint(vocab, ["keyscale", "timesignature", "language"])
    _feed(c, "<think>\nkeyscale: F# minor", lm)
    assert _allowed(c, lm.vocab_size) == {vocab.newline}
    _feed(c, "\ntimesignature:", lm)
    firsts = {lm.decode([t]) for t in _allowed(c, lm.vocab_size)}
    assert firsts == {" "}
    _feed(c, " 6\nlanguage:", lm)
    logits = torch.zeros(lm.vocab_size)
    best = lm.encode(" ja")[0]
    logits[best] = 5.0
    masked = c.mask(logits)
    assert set(torch.nonzero(masked > float("-inf")).flatten().tolist()) == {best}  # greedy first token


def test_caption_blocks_what_upstream_blocks(planner):
    """Upstream masks the 64,000 valid audio codes and the backtick token in a caption, nothing else: not
    the codes past the codebook, not the special tokens, not the newline (an empty caption is its choice)."""
    lm, vocab = planner.lm, planner.vocab
    c = CotConstraint(vocab, ["caption"])
    _feed(c, "<think>\ncaption:", lm)
    allowed = _allowed(c, lm.vocab_size)
    first = lm.ids.first_code
    assert first not in allowed and first + 63_999 not in allowed and lm.encode("`")[-1] not in allowed
    assert {first + 64_000, lm.ids.think_end, lm.ids.eos, vocab.newline, lm.encode(" calm")[0]} <= allowed


def _after_caption(planner, fields, best, user=None):
    """A machine just past "caption: calm piano\n", masking logits whose best token is `best`."""
    c = CotConstraint(planner.vocab, fields, user)
    _feed(c, "<think>\ncaption: calm piano\n", planner.lm)
    logits = torch.zeros(planner.lm.vocab_size)
    logits[planner.lm.encode(best)[0]] = 9.0
    return c, c.mask(logits)


def test_an_indented_best_token_continues_the_caption_under_its_mask(planner):
    c, masked = _after_caption(planner, ["caption", "bpm"], "  ")
    assert torch.equal(masked == float("-inf"), planner.vocab.caption_blocked)  # not "indented only": upstream's
    assert c.strict_output


def test_after_the_caption_the_model_names_the_next_field_itself(planner):
    """A best token that is not indented ends the caption: nothing is masked until the model has written a
    colon, and the field it named goes on, those between never written (upstream's hand-over)."""
    lm, vocab = planner.lm, planner.vocab
    c, masked = _after_caption(planner, ["caption", "duration", "keyscale", "language"], "key")
    assert not torch.isinf(masked).any() and not c.strict_output
    _feed(c, "keyscale:", lm)
    assert _allowed(c, lm.vocab_size) == vocab.tries["keyscale"].children[()]  # keyscale's value begins
    _feed(c, " C major\n", lm)
    assert _allowed(c, lm.vocab_size) == {vocab.names["language"][0]}


def test_a_named_field_the_user_gave_is_still_injected(planner):
    lm = planner.lm
    c, _ = _after_caption(planner, ["caption", "duration", "keyscale"], "dur", Metadata(duration=42))
    _feed(c, "duration:", lm)
    _feed(c, " 42\n", lm)  # forced, token by token
    assert _allowed(c, lm.vocab_size) == {planner.vocab.names["keyscale"][0]}


@pytest.mark.parametrize("name", ["mood:", "bpm:", "caption:", "genres:"])
def test_an_unknown_or_unavailable_name_moves_on_to_the_field_after_the_caption(planner, name):
    """Upstream forces the next field's name right after the model's colon; bpm and caption are behind,
    and genres is no field of the metadata pass."""
    lm, vocab = planner.lm, planner.vocab
    c, _ = _after_caption(planner, ["caption", "duration", "keyscale"], name)
    _feed(c, name, lm)
    assert _allowed(c, lm.vocab_size) == {vocab.names["duration"][0]}


def test_the_end_of_turn_ends_the_pass_wherever_it_is_written(planner):
    lm = planner.lm
    c, _ = _after_caption(planner, ["caption", "duration"], "x")
    c.advance(lm.ids.eos)
    assert c.done


@pytest.mark.parametrize("seed", range(6))
def test_a_random_model_writes_well_formed_metadata_where_the_machine_leads(planner, seed):
    """With the caption given (injected), every field is the machine's: all present, valid, in order."""
    result = planner.write_metadata(SongText("lofi", ""), Metadata(caption="lofi"), SamplingParams(temperature=1.5),
                                    seed)
    meta = result.metadata
    assert 30 <= meta.bpm <= 300 and 10 <= meta.duration <= 600
    assert meta.keyscale in KEYSCALES and meta.language in LANGUAGES and meta.timesignature in {"2", "3", "4", "6"}
    keys = [line.split(":")[0] for line in result.text.split("\n") if line and not line[0].isspace() and ":" in line]
    assert keys == ["bpm", "caption", "duration", "keyscale", "language", "timesignature"]


@pytest.mark.parametrize("seed", range(3))
def test_a_random_models_own_caption_hands_over_and_still_parses(planner, seed):
    """The caption written by the model: after it the model names fields (a random one names nonsense), so
    fields may be missing, but what is read is valid and nothing raises."""
    result = planner.write_metadata(SongText("lofi", ""), Metadata(), SamplingParams(temperature=1.5), seed)
    meta = result.metadata
    assert result.text.startswith("<think>\nbpm: ") and 30 <= meta.bpm <= 300
    assert meta.duration is None or 10 <= meta.duration <= 600
    assert meta.keyscale is None or meta.keyscale in KEYSCALES


def test_user_values_are_injected_verbatim(planner):
    user = Metadata(bpm=123, duration=45, keyscale="Bb major", timesignature="3", language="ja")
    result = planner.write_metadata(SongText("x", ""), user, FAST, 0, fields=["bpm", "duration", "keyscale", "language",
                                                                      "timesignature"])
    assert "bpm: 123\nduration: 45\nkeyscale: Bb major\nlanguage: ja\ntimesignature: 3\n" in result.text
    assert result.metadata == Metadata(bpm=123, duration=45, keyscale="Bb major", language="ja", timesignature="3")
# -- audio codes ----------------------------------------------------------------------------------
def test_exactly_five_codes_per_second_all_valid(planner):
    codes = planner.write_codes(SongText("x", ""), Metadata(bpm=120, duration=11), 11, [1, 2], FAST)
    assert [len(c) for c in codes] == [55, 55]
    assert all(0 <= c < 64_000 for item in codes for c in item)


def test_codes_never_invalid_even_when_the_model_wants_them(planner, monkeypatch):
    lm = planner.lm
    original = PairedDecoder.guided_logits

    def tempting(self, scale):
        logits = original(self, scale).clone()
        logits[:, lm.ids.first_code + 64_500] = 1e4  # an out-of-codebook code token
        logits[:, lm.ids.eos] = 1e4
        return logits

    monkeypatch.setattr(PairedDecoder, "guided_logits", tempting)
    codes = planner.write_codes(SongText("x", ""), Metadata(), 10, [5], FAST)
    assert len(codes[0]) == 50 and max(codes[0]) < 64_000


def test_codes_are_reproducible_per_item(planner):
    a = planner.write_codes(SongText("x", ""), Metadata(), 10, [7, 8], FAST)
    b = planner.write_codes(SongText("x", ""), Metadata(), 10, [8], FAST)
    assert a == planner.write_codes(SongText("x", ""), Metadata(), 10, [7, 8], FAST)
    assert a[1] == b[0] and a[0] != a[1]


def test_cached_decoding_matches_a_full_forward(planner):
    lm = planner.lm
    cond, uncond = lm.encode("<|im_start|>user\nhello there<|im_end|>\n"), lm.encode("<|im_start|>user\nhi")
    decoder = PairedDecoder(lm, [cond], [uncond], 4)
    for token in lm.encode(" a b c"):
        decoder.step(torch.tensor([token]))
        cond, uncond = cond + [token], uncond + [token]
    with torch.no_grad():
        full = [lm.model(input_ids=torch.tensor([ids])).logits[0, -1] for ids in (cond, uncond)]
    guided = decoder.guided_logits(2.0)[0]
    torch.testing.assert_close(guided, full[1] + 2.0 * (full[0] - full[1]), atol=1e-4, rtol=1e-4)


# -- loading errors -------------------------------------------------------------------------------
def test_lm_folder_without_tokenizer_or_with_mismatched_vocab(tiny_root, tmp_path):
    folder = tmp_path / "lm"
    shutil.copytree(tiny_root / "acestep-5Hz-lm-1.7B", folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="lacks its tokenizer"):
        PlannerLM.load(folder)
    shutil.copy(tiny_root / "acestep-5Hz-lm-1.7B" / "tokenizer.json", folder / "tokenizer.json")
    config = json.loads((folder / "config.json").read_text())
    config["vocab_size"] = 1000
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="vocabulary"):
        PlannerLM.load(folder)
# -- through the engine ---------------------------------------------------------------------------
def test_thinking_job_produces_audio_whose_length_matches_the_codes(planner_engine):
    result = planner_engine.generate(parse({"caption": "x", "duration": 11, "thinking": True, "seed": 2,
                                            "use_cot_caption": False, "batch_size": 2}))
    assert result.params["planner"]["audio_codes"] == 55
    for song in result.songs:
        assert song.audio.shape == (55 * 5 * 1920, 2) and song.duration_s == 11.0
    assert result.params["requested_duration"] == 11.0


@pytest.mark.parametrize("duration", [10.2, 10.3])
def test_thinking_with_a_fractional_duration_takes_the_length_of_the_codes_written(planner_engine, duration):
    """The planner writes int(d * 5) codes and they set the song (255 frames for 10.2 s and 10.3 s), not
    upstream's rounding of the duration (254 or 257 frames: a code cut off, or silence hints)."""
    result = planner_engine.generate(parse({"caption": "x", "duration": duration, "thinking": True, "seed": 2,
                                            "use_cot_caption": False}))
    assert result.params["planner"]["audio_codes"] == 51
    assert result.songs[0].audio.shape == (51 * 5 * 1920, 2)


def test_thinking_is_reproducible_and_codes_steer_the_dit(planner_engine):
    request = {"caption": "x", "duration": 10, "thinking": True, "seed": 4, "use_cot_caption": False,
               "bpm": 100, "key_scale": "C major", "time_signature": "4"}
    a = planner_engine.generate(parse(request)).songs[0].audio
    b = planner_engine.generate(parse(request)).songs[0].audio
    plain = planner_engine.generate(parse({**request, "thinking": False})).songs[0].audio
    assert np.array_equal(a, b) and not np.allclose(a, plain)


def test_metadata_cot_fills_only_what_the_user_left_empty(planner_engine):
    result = planner_engine.generate(parse({"caption": "x", "duration": 10, "bpm": 77, "seed": 1,
                                            "use_cot_caption": False}))
    params = result.params
    assert params["bpm"] == 77 and "bpm" not in params["lm_metadata"]
    assert params["key_scale"] in KEYSCALES and params["key_scale"] == params["lm_metadata"]["keyscale"]
    assert params["caption"] == "x"  # use_cot_caption off: the user's caption reaches the DiT


def test_format_input_keeps_user_values(planner_engine):
    out = format_input(planner_engine.models, parse({"caption": "lofi piano", "lyrics": "[Verse]\nrain", "bpm": 90, "duration": 40}), seed=1)
    assert out["bpm"] == 90 and out["duration"] == 40.0
    # A random LM's caption and lyrics are noise, and after its caption it names fields itself (often none).
    assert isinstance(out["caption"], str) and isinstance(out["lyrics"], str)
    assert out["key_scale"] is None or out["key_scale"] in KEYSCALES


def test_sample_query_builds_the_song(planner_engine):
    result = planner_engine.generate(parse({"sample_query": "a calm japanese instrumental", "seed": 3}))
    params = result.params
    assert params["vocal_language"] == "ja"  # from the query's hint, injected into the planner
    assert params["caption"] and 10 <= params["requested_duration"] <= 600
    assert result.songs[0].duration_s == pytest.approx(params["requested_duration"], abs=0.05)


def test_requests_needing_the_planner_fail_clearly_without_one(engine):
    with pytest.raises(PlannerUnavailableError, match="thinking needs the 5 Hz planner"):
        engine.generate(parse({"thinking": True}))
    assert engine.generate(parse({"duration": 10, "use_cot_caption": True})).songs  # CoT options just skip


def test_lyrics_beyond_the_planner_context_are_refused(planner_engine):
    with pytest.raises(InputError, match="too long for the planner") as err:
        planner_engine.generate(parse({"lyrics": "la la la, oh " * 1500, "duration": 10}))
    assert err.value.field == "lyrics"


@pytest.mark.parametrize("mode", ["on", "graphs"])
def test_compiled_decode_step_matches_eager(tiny_root, mode):
    """ACESTEP_LM_COMPILE=on|graphs: the compiled step must compute what the eager one does (on a CPU
    `graphs` captures nothing, but it takes its own path: a step marker and a copied output)."""
    apply_compile_policy()  # what an engine sets at start-up
    eager = PlannerLM.load(tiny_root / "acestep-5Hz-lm-1.7B")
    compiled = PlannerLM.load(tiny_root / "acestep-5Hz-lm-1.7B", compile_decode=mode)
    assert compiled.compile_mode == {"on": "default", "graphs": "reduce-overhead"}[mode]
    prompt = eager.encode("<|im_start|>user\nhello there<|im_end|>\n")
    decoders = [PairedDecoder(lm, [prompt], [prompt[:4]], 8) for lm in (eager, compiled)]
    for token in eager.encode(" a b c d"):
        for decoder in decoders:
            decoder.step(torch.tensor([token]))
        torch.testing.assert_close(decoders[1].guided_logits(2.0), decoders[0].guided_logits(2.0), atol=1e-4, rtol=1e-4)
    # every (rows, capacity) shape is its own graph: dynamo's default limit of 8 would send the rest to eager
    assert torch._dynamo.config.recompile_limit >= 64


def test_graphed_steps_all_run_on_the_planners_own_thread(tiny_root):
    """CUDA-graph trees are thread-local in torch: steps arriving from any job thread must all replay
    on one thread, or each job thread would record (and hold memory for) graphs of its own."""
    import threading

    lm = PlannerLM.load(tiny_root / "acestep-5Hz-lm-1.7B", compile_decode="graphs")
    ran_on = []

    def step(*args):  # stands in for the compiled step: records where it runs
        ran_on.append(threading.current_thread().name)
        return lm.forward(*args)

    lm._compiled_step = step
    prompt = lm.encode("<|im_start|>user\nhello<|im_end|>\n")

    def job():
        decoder = PairedDecoder(lm, [prompt], [prompt[:3]], 4)
        for token in lm.encode(" a b"):
            decoder.step(torch.tensor([token]))

    threads = [threading.Thread(target=job, name=f"job-{i}") for i in range(3)]
    for thread in threads:
        thread.start()
        thread.join()
    assert len(ran_on) == 6 and len(set(ran_on)) == 1 and ran_on[0].startswith("planner-graphs")


def test_every_graphed_planner_replays_on_the_same_thread(tiny_root):
    """A planner loaded again (/v1/init switching LMs) must replay on the thread the first one used:
    torch 2.11 refuses CUDA-graph trees in any thread but the one that first set them up."""
    import threading

    ran_on = []
    for _ in range(2):
        lm = PlannerLM.load(tiny_root / "acestep-5Hz-lm-1.7B", compile_decode="graphs")

        def step(*args, lm=lm):  # stands in for the compiled step: records where it runs
            ran_on.append(threading.get_ident())
            return lm.forward(*args)

        lm._compiled_step = step
        prompt = lm.encode("<|im_start|>user\nhello<|im_end|>\n")
        PairedDecoder(lm, [prompt], None, 2).step(torch.tensor([prompt[0]]))
    assert len(ran_on) == 2 and ran_on[0] == ran_on[1] != threading.get_ident()


def test_a_duration_whose_codes_do_not_fit_the_context_is_refused(planner):
    with pytest.raises(InputError, match="needs 3000 audio codes") as err:
        planner.write_codes(SongText("x", "la la, oh " * 1400), Metadata(bpm=90), 600, [1], FAST)
    assert err.value.field == "duration"


def test_switching_planners_frees_the_old_one_before_the_new_one_loads(tiny_root, tmp_path, monkeypatch):
    """A compiled decode step keeps its planner in a reference cycle; /v1/init switching LMs must not
    hold two models at once until the collector happens to run."""
    import weakref

    from acestep_worker.pipeline.engine import Engine
    from acestep_worker.settings import Settings

    root = tmp_path / "checkpoints"
    root.mkdir()
    for item in tiny_root.iterdir():
        (root / item.name).symlink_to(item)
    (root / "acestep-5Hz-lm-0.6B").symlink_to(tiny_root / "acestep-5Hz-lm-1.7B")
    engine = Engine(Settings.from_env({"ACESTEP_CONFIG_PATH": str(root / "acestep-v15-turbo"), "ACESTEP_DEVICE": "cpu",
                                       "ACESTEP_LM_MODEL_PATH": str(root / "acestep-5Hz-lm-1.7B"),
                                       "ACESTEP_OUTPUT_DIR": str(tmp_path / "outputs")}))
    old = engine.models.planner.lm
    old.held_by_itself = old  # the cycle a compiled step makes, without compiling
    old_alive = weakref.ref(old)
    del old
    seen_when_loading = []
    real_load = PlannerLM.load.__func__

    def load(cls, *args, **kwargs):
        seen_when_loading.append(old_alive() is not None)
        return real_load(cls, *args, **kwargs)

    monkeypatch.setattr(PlannerLM, "load", classmethod(load))
    engine.models.init_models(init_llm=True, lm_model="acestep-5Hz-lm-0.6B")
    assert seen_when_loading == [False] and engine.models.planner.name == "acestep-5Hz-lm-0.6B"
