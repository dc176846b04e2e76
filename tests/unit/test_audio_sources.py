"""Audio sources without a network: data URIs, base64, pod files confined to their folders, and the address
rules that keep URLs off this machine's own networks."""

import base64

import pytest

from acestep_worker.audio.decode import AudioLimits
from acestep_worker.audio.sources import SourcePolicy, check, kind_of, load_audio, read_bytes
from acestep_worker.errors import InputError
from acestep_worker.net.safe_http import address_allowed

from ..support.audio import WAV, wav

STRICT = SourcePolicy()


@pytest.mark.parametrize("address,allowed", [
    ("8.8.8.8", True), ("2606:4700:4700::1111", True), ("127.0.0.1", False), ("10.1.2.3", False),
    ("172.16.0.1", False), ("192.168.1.1", False), ("169.254.169.254", False), ("100.64.0.1", False),
    ("0.0.0.0", False), ("224.0.0.1", False), ("240.0.0.1", False), ("::1", False), ("fe80::1", False),
    ("fc00::1", False), ("::ffff:127.0.0.1", False), ("ff02::1", False)])
def test_address_rules(address, allowed):
    assert address_allowed(address) is allowed


def test_data_uris_and_plain_base64():
    encoded = base64.b64encode(WAV).decode()
    assert read_bytes("src_audio", "data:audio/wav;base64," + encoded, STRICT) == WAV
    assert read_bytes("src_audio", encoded, STRICT) == WAV
    assert read_bytes("src_audio", base64.urlsafe_b64encode(WAV).decode().rstrip("="), STRICT) == WAV
    with pytest.raises(InputError, match="without base64"):
        read_bytes("src_audio", "data:audio/wav,RIFF", STRICT)
    with pytest.raises(InputError, match="valid base64"):
        read_bytes("src_audio", "not base64 at all!", STRICT)
    with pytest.raises(InputError, match="the limit is"):
        read_bytes("src_audio", encoded, SourcePolicy(AudioLimits(max_bytes=1_000)))


def test_inline_audio_is_decoded_and_its_header_checked_at_submission():
    encoded = base64.b64encode(WAV).decode()
    assert check("src_audio", "data:audio/wav;base64," + encoded, STRICT) == "data"
    assert check("src_audio", encoded, STRICT) == "base64"
    not_audio = base64.b64encode(b"not audio at all" * 64).decode()
    for value in ("data:audio/wav;base64," + not_audio, not_audio):
        with pytest.raises(InputError, match="^src_audio is not audio this server can read") as err:
            check("src_audio", value, STRICT)
        assert err.value.field == "src_audio"
    for value, fragment in (("data:audio/wav,RIFF", "without base64"), ("not base64 at all!", "valid base64"),
                            (encoded, "the limit is")):
        with pytest.raises(InputError, match=fragment):
            check("src_audio", value, SourcePolicy(AudioLimits(max_bytes=1_000)))
    with pytest.raises(InputError, match="3.0 s long; the limit is 0.5 s"):  # the header's length cap
        check("src_audio", base64.b64encode(wav(seconds=3.0)).decode(), SourcePolicy(AudioLimits(max_seconds=0.5)))


@pytest.fixture
def pod_policy(tmp_path):
    inputs, outputs = tmp_path / "inputs", tmp_path / "outputs"
    inputs.mkdir()
    outputs.mkdir()
    (inputs / "song.wav").write_bytes(WAV)
    (outputs / "task-1.wav").write_bytes(WAV)
    (tmp_path / "secret.wav").write_bytes(WAV)
    (inputs / "escape.wav").symlink_to(tmp_path / "secret.wav")
    return SourcePolicy(path_roots=(inputs.resolve(), outputs.resolve())), tmp_path


def test_pod_paths_stay_inside_the_input_and_output_folders(pod_policy):
    policy, root = pod_policy
    assert kind_of("song.wav", policy) == "path" and kind_of("song.wav", STRICT) == "base64"
    assert check("src_audio", "song.wav", policy) == "path"
    assert read_bytes("src_audio", str(root / "inputs" / "song.wav"), policy) == WAV
    assert read_bytes("src_audio", "/v1/audio?filename=task-1.wav", policy) == WAV
    for outside in ("../secret.wav", str(root / "secret.wav"), "escape.wav", "/etc/passwd"):
        with pytest.raises(InputError, match="inside the server's input folder"):
            check("src_audio", outside, policy)
    with pytest.raises(InputError, match="no such file"):
        check("src_audio", "nope.wav", policy)


def test_load_audio_decodes_each_field_and_reports_what_arrived():
    loaded = load_audio({"src_audio": base64.b64encode(WAV).decode()}, STRICT)
    assert set(loaded.arrays) == {"src_audio"} and loaded.arrays["src_audio"].shape == (48_000, 2)
    source = loaded.output_fields()["source"]
    assert source["field"] == "src_audio" and source["bytes"] == len(WAV) and source["duration_s"] == 1.0


def test_a_path_with_a_component_over_the_name_limit_is_no_such_file(tmp_path):
    """Found by the API fuzz: a 300-digit name made pathlib raise ENAMETOOLONG (a 500)."""
    from acestep_worker.audio.sources import _confined_path

    with pytest.raises(InputError, match="no such file"):
        _confined_path("src_audio", "4" * 300, (tmp_path,))
