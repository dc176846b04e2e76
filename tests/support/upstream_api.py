"""Upstream's API reference, restated: every documented request field at its default or example value."""

# Every field of the reference's tables, at its documented default or example value.
DOC_FIELDS = {
    "prompt": "", "lyrics": "", "thinking": False, "vocal_language": "en", "audio_format": "mp3",
    "sample_mode": False, "sample_query": "", "use_format": False, "model": None, "bpm": None, "key_scale": "",
    "time_signature": "", "audio_duration": None, "audio_code_string": "", "inference_steps": 8,
    "guidance_scale": 7.0, "use_random_seed": True, "seed": -1, "batch_size": 2, "shift": 3.0, "infer_method": "ode",
    "timesteps": None, "use_adg": False, "cfg_interval_start": 0.0, "cfg_interval_end": 1.0, "lm_model_path": None,
    "lm_backend": "vllm", "lm_temperature": 0.85, "lm_cfg_scale": 2.5, "lm_negative_prompt": "NO USER INPUT",
    "lm_top_k": None, "lm_top_p": 0.9, "lm_repetition_penalty": 1.0, "use_cot_caption": True,
    "use_cot_language": True, "constrained_decoding": True, "constrained_decoding_debug": False,
    "allow_lm_batch": True, "reference_audio_path": None, "src_audio_path": None, "task_type": "text2music",
    "instruction": "Fill the audio semantic mask based on the given conditions:", "repainting_start": 0.0,
    "repainting_end": None, "audio_cover_strength": 1.0,
}
# Documented fields that other branches of this project define (editing, source audio, sampler).
# When one lands, this test fails until it is removed here: the list can only shrink.
PENDING_ELSEWHERE: set[str] = set()
