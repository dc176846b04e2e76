"""LoRA adapters from the network and through the pod: URLs from a loopback file server, hub repos from the
hub stand-in, and the pod's LoRA routes (a PEFT LoRA and a LoKr folder)."""

import dataclasses
import functools
import hashlib
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from acestep_worker.doors.pod.api import ApiSettings, create_app
from acestep_worker.doors.pod.queue import TaskManager
from acestep_worker.errors import InputError
from acestep_worker.models.lora.adapters import Adapters
from acestep_worker.schema.request import parse

from ..support.hub_standin import HubStandIn
from ..support.live_server import LiveServer
from ..support.lora import BASE, lora_audio


@pytest.fixture(scope="module")
def file_server(lora_dir):
    hits = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(lora_dir)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()


def test_a_url_is_downloaded_once_and_cached_by_content_hash(lora_engine, lora_dir, file_server):
    url, hits = file_server
    first = lora_audio(lora_engine, loras=[{"url": f"{url}/comfy-style.safetensors"}]).params["loras"][0]
    again = lora_audio(lora_engine, loras=[{"url": f"{url}/comfy-style.safetensors"}]).params["loras"][0]
    expected = hashlib.sha256((lora_dir / "comfy-style.safetensors").read_bytes()).hexdigest()
    assert first["sha256"] == again["sha256"] == expected
    assert hits.count("/comfy-style.safetensors") == 1


def test_an_oversize_download_is_refused(lora_engine, file_server, tmp_path):
    url, _ = file_server
    small = dataclasses.replace(lora_engine.settings, max_lora_bytes=100, lora_cache_dir=tmp_path)
    adapters = Adapters(small)
    with pytest.raises(InputError, match=r"loras\[0\]: the adapter at that url is larger than"):
        adapters.activate(lora_engine.models.dit(), parse({"loras": [{"url": f"{url}/comfy-style.safetensors"}]}).loras)


def test_a_hub_repo_id_is_fetched_through_huggingface_hub(lora_engine, lora_dir):
    with HubStandIn({"someone/tiny-ace-lora": lora_dir / "peft-style"}) as hub:
        settings = dataclasses.replace(lora_engine.settings, hub_endpoint=hub.url)
        used = Adapters(settings).activate(lora_engine.models.dit(), parse({"loras": [{"repo": "someone/tiny-ace-lora"}]}).loras)
    lora_engine.models.adapters.deactivate(lora_engine.models.dit())
    assert used[0]["format"] == "peft" and used[0]["sha256"] == hashlib.sha256(
        (lora_dir / "peft-style" / "adapter_model.safetensors").read_bytes()).hexdigest()


def test_pod_lora_routes(lora_engine, tmp_path):
    manager = TaskManager(lora_engine, tmp_path).start()
    key = {"Authorization": "Bearer k"}
    try:
        with LiveServer(create_app(lora_engine, manager, ApiSettings(api_key="k"))) as server:
            url = server.url
            assert httpx.get(f"{url}/v1/lora/status").status_code == 401
            status = httpx.get(f"{url}/v1/lora/status", headers=key).json()["data"]
            assert status["loaded"] is False and "peft-style" in status["available"]
            outside = httpx.post(f"{url}/v1/lora/load", headers=key, json={"lora_path": "/etc/passwd"}).json()
            assert outside["code"] == 400 and "outside the adapter folder" in outside["error"]
            loaded = httpx.post(f"{url}/v1/lora/load", headers=key,
                                json={"lora_path": "peft-style", "adapter_name": "main"}).json()
            assert loaded["code"] == 200 and loaded["data"]["adapter_name"] == "main"
            assert httpx.post(f"{url}/v1/lora/scale", headers=key, json={"scale": 0.5}).json()["code"] == 200
            status = httpx.get(f"{url}/v1/lora/status", headers=key).json()["data"]
            assert status == {**status, "loaded": True, "active": True, "scales": {"main": 0.5}}
            task = httpx.post(f"{url}/release_task", headers=key, json=BASE).json()["data"]["task_id"]
            assert manager.get(task).done.wait(120) and manager.get(task).params["loras"][0]["scale"] == 0.5
            off = httpx.post(f"{url}/v1/lora/toggle", headers=key, json={"use_lora": False}).json()
            assert off["data"]["use_lora"] is False
            assert httpx.get(f"{url}/v1/lora/status", headers=key).json()["data"]["active"] is False
            bad = httpx.post(f"{url}/v1/lora/scale", headers=key, json={"scale": 3}).json()
            assert bad["code"] == 400 and "from 0 to 2" in bad["error"]
            assert httpx.post(f"{url}/v1/lora/unload", headers=key, json={}).json()["code"] == 200
            assert httpx.get(f"{url}/v1/lora/status", headers=key).json()["data"]["adapters"] == []
    finally:
        manager.stop()
        lora_engine.models.adapters.state.use_lora = True


def test_pod_lora_load_takes_a_lokr_folder(lora_engine, lora_dir, tmp_path):
    manager = TaskManager(lora_engine, tmp_path).start()
    key = {"Authorization": "Bearer k"}
    try:
        with LiveServer(create_app(lora_engine, manager, ApiSettings(api_key="k"))) as server:
            loaded = httpx.post(f"{server.url}/v1/lora/load", headers=key,
                                json={"lora_path": "lokr-peft", "adapter_name": "kron"}).json()
            assert loaded["code"] == 200 and loaded["data"]["format"] == "peft-lokr"
            assert loaded["data"]["kron_layers"] == 8
            assert loaded["data"]["sha256"] == hashlib.sha256(
                (lora_dir / "lokr-peft" / "adapter_model.safetensors").read_bytes()).hexdigest()
            status = httpx.get(f"{server.url}/v1/lora/status", headers=key).json()["data"]
            assert status["adapters"] == ["kron"] and status["active"] is True
            assert {"lokr-peft", "loha-lycoris.safetensors", "dora-peft"} <= set(status["available"])
            assert httpx.post(f"{server.url}/v1/lora/unload", headers=key, json={}).json()["code"] == 200
    finally:
        manager.stop()
