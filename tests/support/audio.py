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


def encode(data, rate, fmt="WAV", subtype=None):
    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def wav(rate=44_100, seconds=1.0, channels=2):
    return encode(tone(seconds, rate, channels), rate)


WAV = wav(rate=48_000, seconds=1.0)  # what the tests send as src_audio / reference_audio
WAV_SHA = hashlib.sha256(WAV).hexdigest()
B64 = base64.b64encode(WAV).decode()
