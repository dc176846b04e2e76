"""The audio units every layer shares: one sample rate, one latent frame rate, one song length range.

ACE-Step 1.5's VAE turns 48 kHz stereo into 64-channel latents, one frame per 1,920 samples (25 frames
per second); the planner's audio codes run at 5 Hz, five latent frames each. Songs last 10 to 600 s,
and the DiT never makes fewer than 128 frames (5.12 s), as upstream.
"""

from __future__ import annotations

SAMPLE_RATE = 48_000  # Hz: what the VAE encodes and decodes, and every song we write
CHANNELS = 2
SAMPLES_PER_FRAME = 1_920  # the VAE's hop: one latent frame
FRAMES_PER_SECOND = SAMPLE_RATE // SAMPLES_PER_FRAME  # 25 latent frames per second
LATENT_CHANNELS = 64
FRAMES_PER_CODE = 5  # one 5 Hz audio code covers five latent frames
CODES_PER_SECOND = FRAMES_PER_SECOND // FRAMES_PER_CODE
MIN_FRAMES = 128  # upstream never generates fewer (5.12 s); shorter code hints are padded to it
MIN_DURATION_S, MAX_DURATION_S = 10.0, 600.0  # what `duration` accepts
DEFAULT_DURATION_S = 30.0  # a text2music song when neither the request nor the planner says


def frames_for_duration(duration_s: float) -> int:
    """Latent frames for a duration, with upstream's rounding: int(round(d, 1) * 48000) // 1920."""
    return int(max(0.1, round(duration_s, 1)) * SAMPLE_RATE) // SAMPLES_PER_FRAME


def latent_frames(samples: int) -> int:
    """Latent frames covering `samples` of 48 kHz audio (the encoder's input is padded to whole frames)."""
    return -(-samples // SAMPLES_PER_FRAME)

