"""Flow-edit through every door on the tiny tree: a serverless job, the pod's /release_task (JSON with
upstream's camelCase names), the CLI client against the pod, and the page's controls; refusals on a
turbo model name the field before anything is queued. Sources are 1 s: the tiny VAE encoder is slow."""

import os
import subprocess
import sys

import httpx
import pytest

from acestep_worker.doors.pod.launch import page_app
from acestep_worker.doors.pod.page.inputs import client_args
from acestep_worker.doors.pod.queue import TaskManager
from acestep_worker.doors.serverless import run_job

from ..support.audio import B64, WAV
from ..support.live_server import LiveServer
from ..support.pod import task_items

BASE = "acestep-v15-base"
FLOW = {"flow_edit_morph": True, "flow_edit_source_caption": "dark ambient drone", "flow_edit_n_max": 0.75}


def test_a_serverless_job_flow_edits_a_cover_and_reports_what_it_left_out(engine):
    out = run_job(engine, "flow-job", {"caption": "bright synth pop", "seed": 3, "model": BASE, "inference_steps": 4,
                                       "task_type": "cover", "src_audio": B64, "audio_cover_strength": 0.5, **FLOW},
                  env={})
    assert out["results"][0]["duration"] == 1.0 and out["task_type"] == "cover"
    assert out["params"]["flow_edit"] == {"n_min": 0.0, "n_max": 0.75, "n_avg": 1, "window_steps": [0, 3]}
    assert "audio_cover_strength" in out["params"]["unused"]


def test_a_serverless_job_on_turbo_is_refused_naming_flow_edit_morph(engine):
    with pytest.raises(Exception, match="flow_edit_morph needs a base, sft or XL") as err:
        run_job(engine, "flow-turbo", {"caption": "x", "task_type": "cover", "src_audio": B64, **FLOW}, env={})
    assert BASE in str(err.value)


def test_the_pod_takes_a_text2music_flow_edit_as_json_with_camel_case_names(api, manager):
    manager.input_dir.mkdir(parents=True, exist_ok=True)
    (manager.input_dir / "take.wav").write_bytes(WAV)
    item = task_items(api, httpx.post(f"{api}/release_task", json={
        "prompt": "bright synth pop", "src_audio_path": "take.wav", "model": BASE, "inference_steps": 4,
        "flowEditMorph": True, "flowEditSourceCaption": "dark ambient drone", "flowEditNMin": 0.25,
        "flowEditNAvg": 2}))[0]
    assert item["task_type"] == "text2music" and item["duration"] == 1.0 and item["source"]["field"] == "src_audio"


def test_the_pod_refuses_flow_edit_on_turbo_at_submission(api, manager):
    response = httpx.post(f"{api}/release_task", data={"task_type": "cover", "flow_edit_morph": "true"},
                          files={"src_audio": ("take.wav", WAV, "audio/wav")})
    assert response.status_code == 400 and "flow_edit_morph" in response.json()["detail"]
    assert not list(manager.input_dir.glob("upload-*"))


def test_the_cli_client_sends_the_flow_edit_flags(api, manager, tmp_path):
    (tmp_path / "take.wav").write_bytes(WAV)
    result = subprocess.run(
        [sys.executable, "-m", "acestep_worker.doors.client", "--api-url", api, "--src-audio", "take.wav",
         "--task-type", "cover", "--model", BASE, "--steps", "4", "-c", "bright synth pop", "--flow-edit",
         "--flow-edit-source-caption", "dark ambient drone", "--flow-edit-n-max", "0.5", "--flow-edit-n-avg", "2",
         "-o", "remix.wav", "--poll-interval", "0.2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=dict(os.environ), check=False)
    assert result.returncode == 0, result.stderr
    task = max(manager._tasks.values(), key=lambda t: t.created)
    request = task.request
    assert (request.flow_edit_morph, request.flow_edit_source_caption, request.flow_edit_n_max,
            request.flow_edit_n_avg) == (True, "dark ambient drone", 0.5, 2)
    assert (tmp_path / "remix.wav").stat().st_size > 0


def test_the_page_sends_its_flow_edit_controls(engine, tmp_path):
    from gradio_client import Client, handle_file

    manager = TaskManager(engine, engine.settings.output_dir, maxsize=20, ttl_s=3600).start()
    try:
        with LiveServer(page_app(engine, manager, None, 50_000_000)) as server:
            source = tmp_path / "source.wav"
            source.write_bytes(WAV)
            args = client_args(caption="bright synth pop", seed="5", model=BASE, inference_steps="4",
                               src_audio=handle_file(str(source)), task_type="cover", flow_edit_morph=True,
                               flow_edit_source_caption="dark ambient drone", flow_edit_n_max="0.5")
            status, *_ = Client(server.url, verbose=False).predict(*args, api_name="/generate")
            assert status.startswith("Done: 1 song(s)")
            request = max(manager._tasks.values(), key=lambda t: t.created).request
            assert (request.flow_edit_morph, request.flow_edit_source_caption, request.flow_edit_n_max) == (
                True, "dark ambient drone", 0.5)
            with pytest.raises(Exception, match="flow_edit_morph"):
                Client(server.url, verbose=False).predict(*client_args(
                    caption="x", src_audio=handle_file(str(source)), task_type="cover", flow_edit_morph=True),
                    api_name="/generate")
    finally:
        manager.stop()
