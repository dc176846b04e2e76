"""Several stems from one job on the tiny base model: the source is VAE-encoded once for all of them, the
stems go through the DiT as one batch (or the fewest batches a small memory budget allows), each stem is
the song a one-stem job with the same seed makes, the instrumental is the source minus the vocals, and a
serverless result names each file's stem."""

import numpy as np
import pytest

from acestep_worker.doors.serverless import run_job
from acestep_worker.errors import InputError
from acestep_worker.pipeline import edit_conditions
from acestep_worker.pipeline.memory_budget import MemoryBudget, generation_need
from acestep_worker.pipeline.synthesizer import Synthesizer
from acestep_worker.schema.request import parse

from ..support.audio import B64, decoded_song

BASE = "acestep-v15-base"
SOURCE = decoded_song(1.0)
FOUR = "vocals,drums,bass,guitar"


@pytest.fixture
def counts(monkeypatch):
    """How many times the VAE encoded a source and how many DiT batches the synthesizer ran."""
    seen = {"vae_encode": 0, "dit_batches": []}
    encode, synthesize = edit_conditions.encode, Synthesizer.__call__

    def counting_encode(*args, **kwargs):
        seen["vae_encode"] += 1
        return encode(*args, **kwargs)

    def counting_synthesize(self, dit, songs, *args, **kwargs):
        seen["dit_batches"].append(len(songs))
        return synthesize(self, dit, songs, *args, **kwargs)

    monkeypatch.setattr(edit_conditions, "encode", counting_encode)
    monkeypatch.setattr(Synthesizer, "__call__", counting_synthesize)
    return seen


def _extract(engine, track_name, **fields):
    request = parse({"caption": "stems", "seed": 5, "task_type": "extract", "model": BASE, "inference_steps": 2,
                     "track_name": track_name, **fields})
    return engine.generate(request, audio={"src_audio": SOURCE})


def test_four_stems_take_one_vae_encode_and_one_dit_batch(engine, counts):
    result = _extract(engine, FOUR)
    assert counts == {"vae_encode": 1, "dit_batches": [4]}
    assert [song.stem for song in result.songs] == ["vocals", "drums", "bass", "guitar"]
    assert all(song.audio.shape == SOURCE.shape and song.seed == 5 for song in result.songs)
    assert result.params["stems"] == FOUR.split(",") and result.params["stem_batches"] == [4]
    assert len({song.audio.tobytes() for song in result.songs}) == 4  # four instructions, four songs


def test_each_stem_is_the_song_a_one_stem_job_with_its_seed_makes(engine, counts):
    together = _extract(engine, "vocals,drums")
    alone = [_extract(engine, name) for name in ("vocals", "drums")]
    assert counts["vae_encode"] == 3  # one for the two stems, one per one-stem job
    for song, single in zip(together.songs, alone):
        assert single.songs[0].stem == song.stem and "stems" not in single.params
        np.testing.assert_allclose(song.audio, single.songs[0].audio, atol=2e-3)  # batch padding's rounding


def test_a_small_memory_budget_splits_the_stems_into_the_fewest_batches_that_fit(engine, counts, monkeypatch):
    whole = _extract(engine, FOUR)
    dit = engine.models.dit(BASE)
    plan = engine.plan(parse({"task_type": "extract", "model": BASE, "track_name": FOUR, "src_audio": B64}))
    frames = plan.with_source(len(SOURCE)).length.frames

    def need(size):
        return generation_need(dit.transformer.config, frames, size, True, 4)  # base: CFG, float32

    budget_mb = (need(2).device_bytes + need(4).host_bytes + 1) / 1e6  # two rows at once, four songs kept
    monkeypatch.setattr(engine.pipeline, "memory", MemoryBudget(engine.models.device, budget_mb))
    counts["dit_batches"].clear()
    split = _extract(engine, FOUR)
    assert counts["dit_batches"] == [2, 2] and counts["vae_encode"] == 2  # one per job
    assert split.params["stem_batches"] == [2, 2]
    for a, b in zip(split.songs, whole.songs):
        np.testing.assert_allclose(a.audio, b.audio, atol=2e-3)
    monkeypatch.setattr(engine.pipeline, "memory", MemoryBudget(engine.models.device, 1))
    with pytest.raises(InputError, match="even alone"):
        _extract(engine, FOUR)


def test_vocals_and_instrumental_add_up_to_the_source_from_one_dit_row(engine, counts):
    result = _extract(engine, "vocals+instrumental", enable_normalization=False)  # the raw stems
    assert counts == {"vae_encode": 1, "dit_batches": [1]}
    vocals, instrumental = result.songs
    assert (vocals.stem, instrumental.stem) == ("vocals", "instrumental")
    np.testing.assert_array_equal(instrumental.audio, np.clip(SOURCE - vocals.audio, -1.0, 1.0))
    unclipped = np.abs(SOURCE - vocals.audio) <= 1.0
    assert np.abs((vocals.audio + instrumental.audio - SOURCE)[unclipped]).max() < 1e-6
    alone = _extract(engine, "instrumental", enable_normalization=False)
    assert [s.stem for s in alone.songs] == ["instrumental"]
    np.testing.assert_allclose(alone.songs[0].audio, instrumental.audio, atol=1e-6)


def test_each_stem_is_normalised_on_its_own_after_the_instrumental_is_taken_from_the_raw_vocals(engine):
    """Upstream normalises each song it returns; the instrumental is the source minus the vocals before
    either is scaled, so by default each stem is its raw self times its own gain to a -1 dBFS peak."""
    raw = _extract(engine, "vocals+instrumental", enable_normalization=False).songs
    finished = _extract(engine, "vocals+instrumental")
    target = 10 ** (-1 / 20)
    for song, plain, gain_db in zip(finished.songs, raw, finished.params["normalization_gain_db"]):
        assert np.abs(song.audio).max() == pytest.approx(target, rel=1e-6)
        np.testing.assert_allclose(song.audio, plain.audio * 10 ** (gain_db / 20), rtol=1e-4, atol=1e-6)


def test_stems_times_takes_and_lego(engine, counts):
    result = _extract(engine, "drums,bass", batch_size=2, seed="3,9")
    assert [(s.stem, s.seed) for s in result.songs] == [("drums", 3), ("drums", 9), ("bass", 3), ("bass", 9)]
    assert counts["dit_batches"] == [4]
    lego = engine.generate(parse({"caption": "stems", "seed": 5, "task_type": "lego", "model": BASE,
                                  "inference_steps": 2, "track_name": ["guitar", "keyboard"],
                                  "repainting_start": 0.2}), audio={"src_audio": SOURCE})
    assert [s.stem for s in lego.songs] == ["guitar", "keyboard"] and lego.params["repaint_frames"] == [5, 25]


def test_a_serverless_job_lists_one_named_file_per_stem(engine):
    out = run_job(engine, "stems-job", {"caption": "stems", "seed": 4, "task_type": "extract", "model": BASE,
                                        "inference_steps": 2, "src_audio": B64, "track_name": "vocals+instrumental",
                                        "audio_format": "flac", "return_audio_base64": True}, env={})
    assert out["stems"] == ["vocals", "instrumental"] and out["batch_size"] == 1
    assert [(r["track_name"], r["filename"]) for r in out["results"]] == [
        ("vocals", "stems-job-1-vocals.flac"), ("instrumental", "stems-job-2-instrumental.flac")]
    assert all(r["audio_base64"] and r["duration"] == 1.0 for r in out["results"])
    one = run_job(engine, "one-stem", {"caption": "stems", "seed": 4, "task_type": "extract", "model": BASE,
                                       "inference_steps": 2, "src_audio": B64, "track_name": "vocals"}, env={})
    assert "track_name" not in one["results"][0] and "stems" not in one  # upstream's shape for one stem
    assert one["results"][0]["filename"] == "one-stem-1.mp3"


def test_inline_delivery_counts_every_stem(engine):
    with pytest.raises(InputError, match=r"24 songs of .* at most \d+ songs \(stems x batch_size\)"):
        run_job(engine, "too-many", {"task_type": "extract", "model": BASE, "src_audio": B64, "batch_size": 8,
                                     "track_name": "vocals,drums,bass", "audio_format": "wav32",
                                     "return_audio_base64": True, "max_base64_bytes": 1_000_000}, env={})

