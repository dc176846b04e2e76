"""LoRA adapters on the tiny DiT: formats, per-job application, slots, and what a job reports."""

import hashlib
import os
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from acestep_worker.doors.serverless import run_job
from acestep_worker.errors import GenerationCancelled, InputError
from acestep_worker.schema.request import parse

from ..support.lora import BASE, RENAMES, hand_merged, lora_audio, peft_deltas


def _comfy_deltas(lora_dir):
    """kohya/ComfyUI layout: lora_up @ lora_down * (alpha / rank)."""
    tensors = load_file(str(lora_dir / "comfy-style.safetensors"))
    deltas = {}
    for key, down in tensors.items():
        if key.endswith("lora_down.weight"):
            stem = key.removesuffix(".lora_down.weight")
            _, _, _, layer, block, proj = stem.split(".")
            scale = float(tensors[f"{stem}.alpha"]) / down.shape[0]
            deltas[f"layers.{layer}.{block}.{RENAMES[proj]}"] = tensors[f"{stem}.lora_up.weight"] @ down * scale
    return deltas


def test_the_tiny_tree_has_an_adapter_in_each_layout(lora_dir):
    assert (lora_dir / "peft-style" / "adapter_config.json").is_file()
    assert {"comfy-style.safetensors", "xl-style.safetensors"} <= {p.name for p in lora_dir.glob("*.safetensors")}


def test_scale_zero_gives_the_same_audio_bytes_as_no_adapter(lora_engine):
    plain = run_job(lora_engine, "plain", {**BASE, "audio_format": "wav"}, env={})
    zero = run_job(lora_engine, "zero", {**BASE, "audio_format": "wav", "loras": [{"name": "peft-style", "scale": 0}]},
                   env={})
    assert zero["results"][0]["sha256"] == plain["results"][0]["sha256"]


def test_scale_one_equals_the_weights_merged_by_hand(lora_engine, lora_dir):
    with_adapter = lora_audio(lora_engine, loras=[{"name": "peft-style", "scale": 1.0}]).songs[0].audio
    undo = hand_merged(lora_engine, [(peft_deltas(lora_dir), 1.0)])
    try:
        merged = lora_audio(lora_engine).songs[0].audio
    finally:
        undo()
    assert np.abs(with_adapter - lora_audio(lora_engine).songs[0].audio).max() > 1e-4  # the adapter does something
    np.testing.assert_allclose(with_adapter, merged, atol=2e-5, rtol=0)


def test_two_adapters_compose(lora_engine, lora_dir):
    both = lora_audio(lora_engine, loras=[{"name": "peft-style", "scale": 0.7},
                                          {"path": "comfy-style.safetensors", "scale": 1.5}])
    undo = hand_merged(lora_engine, [(peft_deltas(lora_dir), 0.7), (_comfy_deltas(lora_dir), 1.5)])
    try:
        merged = lora_audio(lora_engine).songs[0].audio
    finally:
        undo()
    np.testing.assert_allclose(both.songs[0].audio, merged, atol=2e-5, rtol=0)
    assert [entry["format"] for entry in both.params["loras"]] == ["peft", "kohya"]


def test_a_wrong_shape_adapter_is_refused_before_generating(lora_engine):
    stages = []
    with pytest.raises(InputError) as err:
        lora_engine.generate(parse({**BASE, "loras": [{"name": "peft-style"}, {"name": "xl-style"}]}),
                             on_progress=lambda p: stages.append(p.stage))
    assert err.value.field == "loras[1]"
    assert "xl-style" in str(err.value) and "has 64 inputs, the adapter expects 96" in str(err.value)
    assert stages == []  # nothing ran


@pytest.mark.parametrize("entry,fragment", [
    ({"name": "missing"}, "no adapter 'missing' in the adapter folder"),
    ({"path": "../outside.safetensors"}, "outside the adapter folder"),
    ({"url": "ftp://example.com/a.safetensors"}, "must be an https URL"),
    ({"url": "https://nonexistent.invalid/a.safetensors"}, "could not be downloaded"),
    ({"name": "random_weights.json"}, "not a readable safetensors file"),
    ({"repo": "not a repo id"}, "hub repository id"),
])
def test_bad_adapters_are_one_sentence_naming_the_entry(lora_engine, entry, fragment):
    with pytest.raises(InputError) as err:
        lora_audio(lora_engine, loras=[{"name": "peft-style", "scale": 0.5}, entry])
    assert err.value.field == "loras[1]" and fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_every_door_refuses_a_bad_adapter_at_submission_before_any_audio_is_fetched(lora_engine, monkeypatch):
    """The runner's check (serverless, CLI and pod alike) reads the adapter folder: the job is refused
    naming loras[i] before its source is downloaded, not after."""
    fetched = []
    monkeypatch.setattr("acestep_worker.runner.job.load_audio", lambda *a, **k: fetched.append(a))
    job = {**BASE, "task_type": "cover", "src_audio": "https://example.com/song.wav",
           "loras": [{"name": "peft-style"}, {"name": "random_weights.json"}]}
    with pytest.raises(InputError) as err:
        run_job(lora_engine, "bad-adapter", job, env={})
    assert err.value.field == "loras[1]" and "not a readable safetensors file" in str(err.value)
    assert fetched == []


def test_an_unknown_key_layout_is_refused(lora_engine, lora_dir, tmp_path):
    save_file({"weird.block.weight": torch.zeros(2, 2)}, str(lora_dir / "not-a-lora.safetensors"))
    try:
        with pytest.raises(InputError, match=r"loras\[0\] is not a LoRA adapter this server understands"):
            lora_audio(lora_engine, loras=[{"name": "not-a-lora"}])
    finally:
        (lora_dir / "not-a-lora.safetensors").unlink()


def test_a_failing_job_leaves_no_adapter_active(lora_engine):
    plain = lora_audio(lora_engine).songs[0].audio
    with pytest.raises(GenerationCancelled):
        lora_engine.generate(parse({**BASE, "loras": [{"name": "peft-style"}]}), should_stop=lambda: True)
    assert np.array_equal(lora_audio(lora_engine).songs[0].audio, plain)


def test_recently_used_adapters_stay_loaded_up_to_the_slots(tiny_env, lora_dir):
    from acestep_worker.pipeline.engine import Engine
    from acestep_worker.settings import Settings

    engine = Engine(Settings.from_env({**tiny_env, "ACESTEP_LORA_DIR": str(lora_dir), "ACESTEP_LORA_SLOTS": "1"}))
    dit = engine.models.dit()
    engine.models.adapters.activate(dit, parse({"loras": [{"name": "peft-style"}]}).loras)
    engine.models.adapters.activate(dit, parse({"loras": [{"name": "comfy-style"}]}).loras)
    assert len(dit.transformer.peft_config) == 1
    with pytest.raises(InputError, match="exceed the 1 this server keeps loaded"):
        engine.models.adapters.activate(dit, parse({"loras": ["peft-style", "comfy-style"]}).loras)


def test_serverless_output_echoes_the_adapters_with_their_hashes(lora_engine, lora_dir):
    output = run_job(lora_engine, "lora-job", {**BASE, "loras": [{"name": "peft-style", "scale": 0.5}]}, env={})
    echoed = output["params"]["loras"]
    assert echoed == [{"source": "name 'peft-style'", "scale": 0.5, "format": "peft", "rank": 4, "kron_layers": 0,
                       "merged_layers": 0, "sha256": hashlib.sha256((lora_dir / "peft-style" / "adapter_model.safetensors").read_bytes())
                       .hexdigest()}]


def test_a_loaded_adapter_is_recognised_without_reading_its_file_again(lora_dir, monkeypatch, tmp_path):
    from acestep_worker.models.lora import sources

    reads = []
    real = sources.file_sha256
    monkeypatch.setattr(sources, "file_sha256", lambda path: reads.append(path) or real(path))
    monkeypatch.setattr(sources, "_HASHES", {})
    adapter = tmp_path / "style.safetensors"
    adapter.write_bytes((lora_dir / "comfy-style.safetensors").read_bytes())
    first = sources.sha256_of(adapter)
    assert sources.sha256_of(adapter) == first and len(reads) == 1  # the second job reads no bytes
    adapter.write_bytes(adapter.read_bytes()[:-1] + b" ")  # same size, new content and mtime
    os.utime(adapter, ns=(adapter.stat().st_atime_ns, adapter.stat().st_mtime_ns + 1_000_000))
    assert sources.sha256_of(adapter) != first and len(reads) == 2


def test_an_edited_peft_config_is_loaded_again_not_served_from_the_lru(tiny_env, lora_dir, tmp_path):
    import json
    import shutil

    from acestep_worker.pipeline.engine import Engine
    from acestep_worker.settings import Settings

    folder = tmp_path / "loras"
    shutil.copytree(lora_dir / "peft-style", folder / "mine")
    engine = Engine(Settings.from_env({**tiny_env, "ACESTEP_LORA_DIR": str(folder)}))
    dit = engine.models.dit()
    ref = parse({"loras": [{"name": "mine"}]}).loras
    first = engine.models.adapters.load("loras[0]", ref[0], dit)
    assert engine.models.adapters.load("loras[0]", ref[0], dit) is first  # unchanged: the LRU answers
    config = json.loads((folder / "mine" / "adapter_config.json").read_text())
    (folder / "mine" / "adapter_config.json").write_text(json.dumps({**config, "lora_alpha": 2 * config["lora_alpha"]}))
    second = engine.models.adapters.load("loras[0]", ref[0], dit)
    assert second is not first and second.sha256 == first.sha256  # same weights, new scaling
    a_key = next(k for k in dit.transformer.state_dict() if first.peft_name in k and "lora_B" in k)
    b_key = a_key.replace(first.peft_name, second.peft_name)
    torch.testing.assert_close(dit.transformer.state_dict()[b_key], 2 * dit.transformer.state_dict()[a_key])


# -- issue #18: the lock, NaN weights, confinement ------------------------------------------------------

def test_a_slow_adapter_does_not_hold_another_job_and_stops_at_its_deadline(lora_engine, monkeypatch):
    """An adapter whose fetch is slow (a trickling URL) is prepared before the engine's lock: a plain job
    runs meanwhile, and the slow one stops at its own deadline (locate gets the deadline and the cancel)."""
    import threading
    import time

    from acestep_worker.errors import AceStepError
    from acestep_worker.models.lora import adapters as adapters_module

    real_locate, seen, started = adapters_module.locate, {}, threading.Event()

    def slow_locate(field, ref, settings, **bounds):
        if ref.value != "https://example.com/slow-download.safetensors":
            return real_locate(field, ref, settings, **bounds)
        seen.update(bounds, lock_held=lora_engine.models.lock.locked())
        started.set()
        should_stop, give_up = bounds.get("should_stop"), time.monotonic() + 20
        while not (should_stop and should_stop()) and time.monotonic() < give_up:
            time.sleep(0.02)  # a download honouring the job's deadline and cancel, as net/ does
        raise GenerationCancelled("stopped while downloading")

    monkeypatch.setattr(adapters_module, "locate", slow_locate)
    outcome = {}

    def slow_job():
        start = time.monotonic()
        try:
            run_job(lora_engine, "slow", {**BASE, "loras": [{"url": "https://example.com/slow-download.safetensors"}],
                                          "timeout_seconds": 8}, env={})
        except AceStepError as exc:
            outcome["error"] = str(exc)
        outcome["seconds"] = time.monotonic() - start

    thread = threading.Thread(target=slow_job)
    thread.start()
    try:
        assert started.wait(30)
        plain = lora_audio(lora_engine)  # the accelerator is free: the slow job holds no lock while it waits
        assert plain.songs and thread.is_alive(), "the plain job waited for the slow adapter"
    finally:
        thread.join(30)
    assert not seen["lock_held"]
    assert seen["deadline"] is not None and callable(seen["should_stop"])
    assert "timed out after 8 s" in outcome["error"] and outcome["seconds"] < 9.5, outcome


def _write_peft(folder, lora_dir):
    shutil.copytree(lora_dir / "peft-style", folder)


def test_nan_or_inf_weights_are_refused_when_the_adapter_loads(lora_engine, lora_dir):
    tensors = load_file(str(lora_dir / "comfy-style.safetensors"))
    key = next(k for k in tensors if k.endswith("lora_up.weight"))
    stages = []
    for name, value in (("nan-style", float("nan")), ("inf-style", float("inf"))):
        bad = dict(tensors)
        bad[key] = bad[key].clone()
        bad[key][0, 0] = value
        save_file(bad, str(lora_dir / f"{name}.safetensors"))
        try:
            with pytest.raises(InputError) as err:
                lora_engine.generate(parse({**BASE, "loras": [{"name": "peft-style"}, {"name": name}]}),
                                     on_progress=lambda p: stages.append(p.stage))
        finally:
            (lora_dir / f"{name}.safetensors").unlink()
        assert err.value.field == "loras[1]" and "holds NaN or infinite values" in str(err.value)
    assert stages == []  # refused before any step, not after a whole diffusion


def test_a_link_inside_an_adapter_folder_cannot_reach_outside_it(lora_engine, lora_dir, tmp_path):
    outside = tmp_path / "elsewhere"
    _write_peft(outside, lora_dir)  # a good adapter: only where it lies is wrong
    folders = {"linked-weights": "adapter_model.safetensors", "linked-config": "adapter_config.json"}
    try:
        for folder, linked in folders.items():
            _write_peft(lora_dir / folder, lora_dir)
            (lora_dir / folder / linked).unlink()
            (lora_dir / folder / linked).symlink_to(outside / linked)
            with pytest.raises(InputError) as err:
                lora_audio(lora_engine, loras=[{"name": folder}])
            assert err.value.field == "loras[0]" and "links outside the adapter folder" in str(err.value)
        hostname = lora_dir / "linked-config" / "adapter_config.json"
        hostname.unlink()
        hostname.symlink_to("/etc/hostname")
        with pytest.raises(InputError, match="links outside the adapter folder"):
            lora_audio(lora_engine, loras=[{"name": "linked-config"}])
    finally:
        for folder in folders:
            shutil.rmtree(lora_dir / folder, ignore_errors=True)
