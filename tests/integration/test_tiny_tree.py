"""The tiny checkpoint tree: official names, real interfaces, and loud labels."""

import json

from acestep_worker.dev import tiny
from acestep_worker.models.text_encoder import load_tokenizer


def test_official_folder_names_and_markers(tiny_root):
    for name in ("acestep-v15-turbo", "acestep-v15-base", "vae", "Qwen3-Embedding-0.6B"):
        marker = json.loads((tiny_root / name / tiny.RANDOM_WEIGHTS_MARKER).read_text())
        assert marker["random_weights"] is True
    assert (tiny_root / "acestep-v15-turbo" / "silence_latent.pt").is_file()


def test_tokenizer_has_qwen3_special_tokens_in_order_and_appends_eos(tiny_root):
    tokenizer, pad = load_tokenizer(tiny_root / "Qwen3-Embedding-0.6B")
    ids = [tokenizer.token_to_id(t) for t in tiny.QWEN3_SPECIAL_TOKENS]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert pad == tokenizer.token_to_id("<|endoftext|>") == ids[0]
    encoded = tokenizer.encode("# Metas\n- bpm: 120<|endoftext|>\n").ids
    assert encoded[-1] == pad and encoded.count(pad) == 2
    assert tokenizer.encode("120").tokens[:3] == ["1", "2", "0"]  # Qwen splits digits


def test_vae_has_the_real_frame_rate(tiny_root):
    config = json.loads((tiny_root / "vae" / "config.json").read_text())
    hop = 1
    for r in config["downsampling_ratios"]:
        hop *= r
    assert hop == 1920 and config["sampling_rate"] == 48000 and config["decoder_input_channels"] == 64
