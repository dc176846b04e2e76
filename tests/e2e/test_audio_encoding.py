"""Encoding in a child process, where a crash of the codec fails only its test."""




def test_a_long_ogg_vorbis_song_does_not_crash_the_process():
    """libvorbis puts its whole pending input on the stack: one write of a long song overflowed it
    (a segfault at ~45 s with the usual 8 MiB stack). Run with a 1 MiB thread stack, where 8 s of
    audio written at once already crashes, in a child process so a crash fails only this test."""
    import subprocess
    import sys

    script = (
        "import threading, numpy as np\n"
        "from acestep_worker.audio.encode import encode, decode\n"
        "threading.stack_size(1 << 20)\n"
        "out = []\n"
        "audio = np.random.default_rng(0).uniform(-0.5, 0.5, (8 * 48000, 2)).astype(np.float32)\n"
        "thread = threading.Thread(target=lambda: out.append(encode(audio, 48000, 'ogg')))\n"
        "thread.start(); thread.join()\n"
        "assert decode(out[0])[0].shape == audio.shape\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
