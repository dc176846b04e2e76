"""Audio sources: URLs from a real loopback HTTP server, data URIs, base64, bucket keys on the moto
S3 server, and pod files; the address rules that keep URLs off this machine's own networks."""

import base64
import http.server
import threading
import time
from types import SimpleNamespace

import boto3
import pytest

from acestep_worker.audio.decode import AudioLimits
from acestep_worker.audio.sources import SourcePolicy, check, kind_of, load_audio, read_bytes
from acestep_worker.errors import InputError
from acestep_worker.net.bucket import BucketConfig
from acestep_worker.net.safe_http import address_allowed

from .test_audio_in import _wav
from .test_delivery import SECRET, s3_server  # noqa: F401  (the moto S3 server fixture)

WAV = _wav(rate=48_000, seconds=1.0)


class _Handler(http.server.BaseHTTPRequestHandler):
    routes = {}

    def do_GET(self):  # noqa: N802
        status, headers, body, delay = self.routes.get(self.path, (404, {}, b"missing", 0))
        time.sleep(delay)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers and "Connection" not in headers:  # else: the body ends at close
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def web():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    _Handler.routes = {
        "/song.wav": (200, {"Content-Type": "audio/wav"}, WAV, 0),
        "/hop": (302, {"Location": "/song.wav"}, b"", 0),
        "/loop": (302, {"Location": "/loop"}, b"", 0),
        "/to-file": (302, {"Location": "file:///etc/passwd"}, b"", 0),
        "/slow": (200, {}, WAV, 3.0),
        "/big-declared": (200, {"Content-Length": "999999999"}, b"", 0),
        "/big-undeclared": (200, {"Connection": "close"}, WAV * 3, 0),
    }
    yield f"http://127.0.0.1:{port}", port
    server.shutdown()


OPEN = SourcePolicy(allow_private=True)
STRICT = SourcePolicy()


def test_a_url_is_streamed_and_redirects_are_followed(web):
    base, _ = web
    assert read_bytes("src_audio", f"{base}/song.wav", OPEN) == WAV
    assert read_bytes("src_audio", f"{base}/hop", OPEN) == WAV


@pytest.mark.parametrize("path,policy,fragment", [
    ("/missing", OPEN, "answered HTTP 404"),
    ("/loop", OPEN, "redirected more than 5 times"),
    ("/to-file", OPEN, "must be an https:// URL"),
    ("/slow", SourcePolicy(allow_private=True, fetch_timeout_s=0.5), "in time"),
    ("/big-declared", SourcePolicy(AudioLimits(max_bytes=50_000), allow_private=True), "the limit is"),
    ("/big-undeclared", SourcePolicy(AudioLimits(max_bytes=150_000), allow_private=True), "the limit is"),
])
def test_url_failures_are_one_sentence(web, path, policy, fragment):
    base, _ = web
    started = time.monotonic()
    with pytest.raises(InputError, match=fragment) as err:
        read_bytes("reference_audio", base + path, policy)
    assert err.value.field == "reference_audio" and time.monotonic() - started < 2.5


def test_the_jobs_deadline_bounds_a_download(web):
    base, _ = web
    with pytest.raises(InputError, match="in time"):
        read_bytes("src_audio", f"{base}/slow", OPEN, deadline=time.monotonic() + 0.3)


def test_private_addresses_and_plain_http_are_refused_by_default(web):
    base, port = web
    with pytest.raises(InputError, match="https://"):
        read_bytes("src_audio", f"{base}/song.wav", STRICT)
    for url in (f"https://127.0.0.1:{port}/song.wav", f"https://[::1]:{port}/x", "https://169.254.169.254/latest"):
        with pytest.raises(InputError, match="loopback, private or reserved"):
            check("src_audio", url, STRICT)
    # A name is judged by what it resolves to, at connect time.
    with pytest.raises(InputError, match=r"localhost \((127\.0\.0\.1|::1)\)"):
        read_bytes("src_audio", f"https://localhost:{port}/song.wav", STRICT)


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


def test_a_bucket_key_is_read_with_the_jobs_credentials(s3_server):  # noqa: F811
    client = boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="AK", aws_secret_access_key=SECRET,
                          region_name="us-east-1")
    client.put_object(Bucket="songs", Key="in/source.wav", Body=WAV)
    policy = SourcePolicy(bucket=BucketConfig(s3_server, "songs", "AK", SECRET))
    assert read_bytes("src_audio", "s3://songs/in/source.wav", policy) == WAV
    with pytest.raises(InputError, match="has no object") as err:
        read_bytes("src_audio", "s3://songs/in/missing.wav", policy)
    with pytest.raises(InputError, match="the limit is"):
        read_bytes("src_audio", "s3://songs/in/source.wav", SourcePolicy(AudioLimits(max_bytes=1_000),
                                                                         bucket=policy.bucket))
    with pytest.raises(InputError, match="no bucket is configured"):
        check("src_audio", "s3://songs/in/source.wav", STRICT)
    assert SECRET not in str(err.value)


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
    request = SimpleNamespace(src_audio=base64.b64encode(WAV).decode(), reference_audio=None)
    loaded = load_audio(request, STRICT)
    assert set(loaded.arrays) == {"src_audio"} and loaded.arrays["src_audio"].shape == (48_000, 2)
    source = loaded.output_fields()["source"]
    assert source["field"] == "src_audio" and source["bytes"] == len(WAV) and source["duration_s"] == 1.0


def test_a_cancel_ends_a_download_between_chunks(web):
    from acestep_worker.errors import GenerationCancelled

    base, _ = web
    with pytest.raises(GenerationCancelled):
        read_bytes("src_audio", f"{base}/song.wav", OPEN, should_stop=lambda: True)


def test_a_path_with_a_component_over_the_name_limit_is_no_such_file(tmp_path):
    """Found by the API fuzz: a 300-digit name made pathlib raise ENAMETOOLONG (a 500)."""
    from acestep_worker.audio.sources import _confined_path

    with pytest.raises(InputError, match="no such file"):
        _confined_path("src_audio", "4" * 300, (tmp_path,))
