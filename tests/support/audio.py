"""Test audio built here, byte for byte: tones, encoded files, and the 1 s WAV the audio inputs send."""

from __future__ import annotations

import base64
import hashlib
import io

import numpy as np
import soundfile as sf


def tone(seconds=1.0, rate=44_100, channels=2, freq=1_000.0):
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(wave[:, None], channels, axis=1)


def decoded_song(seconds: float, seed: int = 0) -> np.ndarray:
    """What the engine takes as decoded audio: float32 [samples, 2] at 48 kHz, a tone with a little
    seeded noise (so that two seeds give two different songs)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 48_000)) / 48_000
    song = 0.3 * np.sin(2 * np.pi * 220 * t)[:, None] + 0.05 * rng.standard_normal((t.size, 2))
    return song.astype(np.float32)


def encode(data, rate, fmt="WAV", subtype=None):
    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def wav(rate=44_100, seconds=1.0, channels=2):
    return encode(tone(seconds, rate, channels), rate)


WAV = wav(rate=48_000, seconds=1.0)  # what the tests send as src_audio / reference_audio
WAV_SHA = hashlib.sha256(WAV).hexdigest()
B64 = base64.b64encode(WAV).decode()
