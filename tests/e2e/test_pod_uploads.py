"""The pod API with audio inputs, over real HTTP on the tiny tree: multipart uploads under upstream's part
names, `*_path` fields confined to the input folder, data URIs in JSON, bucket keys, and uploads deleted when done."""

import base64
import time

import httpx
import pytest

from ..support.audio import WAV, WAV_SHA
from ..support.s3 import SECRET


def _uploads(manager):
    return sorted(p.name for p in manager.input_dir.glob("upload-*"))


def _finish(api, response, timeout=180):
    assert response.status_code == 200, response.text
    task_id = response.json()["data"]["task_id"]
    deadline = time.time() + timeout
    while time.time() < deadline:
        entry = httpx.post(f"{api}/query_result", json={"task_id_list": [task_id]}).json()["data"][0]
        if entry["status"] != 0:
            return entry
        time.sleep(0.2)
    raise AssertionError("task did not finish")


def _items(entry):
    import json

    assert entry["status"] == 1, entry.get("error")
    return json.loads(entry["result"])


@pytest.mark.parametrize("part,report", [("src_audio", "source"), ("ctx_audio", "source"),
                                         ("ref_audio", "reference"), ("reference_audio", "reference")])
def test_multipart_uploads_under_upstreams_part_names(api, manager, part, report):
    response = httpx.post(f"{api}/release_task", data={"caption": "edit me", "duration": "10"},
                          files={part: ("take 1.wav", WAV, "audio/wav")})
    item = _items(_finish(api, response))[0]
    assert item[report]["sha256"] == WAV_SHA and item[report]["duration_s"] == 1.0
    assert item["task_type"] and _uploads(manager) == []  # the upload went with its task


def test_an_upload_replaces_a_path_field_and_bad_uploads_leave_nothing(api, manager):
    response = httpx.post(f"{api}/release_task", data={"src_audio_path": "/etc/passwd", "duration": "10"},
                          files={"src_audio": ("a.wav", WAV, "audio/wav")})
    assert _items(_finish(api, response))[0]["source"]["sha256"] == WAV_SHA
    bad = httpx.post(f"{api}/release_task", files={"src_audio": ("a.mp3", b"not audio" * 50, "audio/mpeg")})
    assert bad.status_code == 400 and bad.json()["field"] == "src_audio"
    assert bad.json()["detail"].startswith("src_audio is not audio")
    twice = httpx.post(f"{api}/release_task", files=[("src_audio", ("a.wav", WAV)), ("ctx_audio", ("b.wav", WAV))])
    assert twice.status_code == 400 and "uploaded 2 times" in twice.json()["detail"]
    assert _uploads(manager) == []


def test_path_fields_read_only_the_input_and_output_folders(api, manager, tmp_path):
    manager.input_dir.mkdir(parents=True, exist_ok=True)
    (manager.input_dir / "mine.wav").write_bytes(WAV)
    entry = _finish(api, httpx.post(f"{api}/release_task", json={"src_audio_path": "mine.wav", "duration": 10}))
    item = _items(entry)[0]
    assert item["source"]["sha256"] == WAV_SHA and (manager.input_dir / "mine.wav").is_file()  # not an upload
    # A result can be fed back in by its own download link.
    chained = _finish(api, httpx.post(f"{api}/release_task", json={"reference_audio_path": item["file"],
                                                                   "duration": 10}))
    assert _items(chained)[0]["reference"]["bytes"] == item["bytes"]
    (tmp_path / "secret.wav").write_bytes(WAV)
    for outside in ("../secret.wav", str(tmp_path / "secret.wav"), "/etc/passwd", "../../../../etc/hostname"):
        response = httpx.post(f"{api}/release_task", json={"src_audio_path": outside})
        assert response.status_code == 400 and "inside the server's input folder" in response.json()["detail"]


def test_data_uris_in_json_and_refused_private_urls(api):
    uri = "data:audio/wav;base64," + base64.b64encode(WAV).decode()
    item = _items(_finish(api, httpx.post(f"{api}/release_task", json={"ref_audio": uri, "duration": 10})))[0]
    assert item["reference"]["sha256"] == WAV_SHA
    refused = httpx.post(f"{api}/release_task", json={"src_audio": f"{api}/health"})
    assert refused.status_code == 400 and refused.json()["field"] == "src_audio"


def test_the_pod_reads_bucket_keys_with_the_bucket_variables(s3_engine, s3_server):
    engine = s3_engine
    import boto3

    from acestep_worker.audio.sources import SourcePolicy, read_bytes

    boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="AK", aws_secret_access_key=SECRET,
                 region_name="us-east-1").put_object(Bucket="songs", Key="pod/src.wav", Body=WAV)
    env = {"BUCKET_ENDPOINT_URL": s3_server, "BUCKET_ACCESS_KEY_ID": "AK", "BUCKET_SECRET_ACCESS_KEY": SECRET,
           "BUCKET_NAME": "songs"}
    policy = SourcePolicy.for_pod(engine.settings, engine.settings.output_dir, env)
    assert read_bytes("src_audio", "s3://songs/pod/src.wav", policy) == WAV
    assert SourcePolicy.for_pod(engine.settings, engine.settings.output_dir, {}).bucket is None
