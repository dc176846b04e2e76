"""Upstream's newer routes on the live pod: `/v1/chat/completions` (the OpenAI client, plain and
streamed, over the one task queue), `/v1/create_sample` over the planner, `/v1/reinitialize`."""

import base64
import json
import time
from dataclasses import replace

import httpx
import openai
import pytest

from acestep_worker.audio.encode import decode
from acestep_worker.doors.pod.api import ApiSettings, create_app
from acestep_worker.doors.pod.queue import TaskManager
from acestep_worker.errors import GenerationFailed
from acestep_worker.runner.deadline import JobTimedOut

from ..support.audio import wav
from ..support.live_server import LiveServer, free_port

KEY = "chat-k3y"
SONG = {"role": "user", "content": "<prompt>lofi piano, rain</prompt><lyrics>[Verse]\nrain on the glass</lyrics>"}


@pytest.fixture(scope="module")
def locked_api(engine, manager):
    """The pod's API with a key, over the module's started task manager (the tiny engine, no planner)."""
    with LiveServer(create_app(engine, manager, ApiSettings(api_key=KEY))) as server:
        yield server.url


@pytest.fixture(scope="module")
def planner_api(planner_engine, tmp_path_factory):
    manager = TaskManager(planner_engine, tmp_path_factory.mktemp("planner-out"), maxsize=5).start()
    with LiveServer(create_app(planner_engine, manager, ApiSettings(api_key=KEY))) as server:
        yield server.url
    manager.stop()


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=300)


def _audio(items) -> list[bytes]:
    return [base64.b64decode(item["audio_url"]["url"].split(",", 1)[1]) for item in items]


# -- /v1/chat/completions -------------------------------------------------------------------------

# The pod as the image starts it (no key; the OpenAI client still sends a Bearer header), and with a key.
@pytest.mark.parametrize("door", ["api", "locked_api"])
def test_openai_client_gets_a_song_as_a_data_url(door, manager, request):
    url = request.getfixturevalue(door)
    before = manager.stats()["jobs"]["succeeded"]
    raw = client(url).chat.completions.with_raw_response.create(
        model="acestep/acestep-v15-turbo", messages=[SONG], seed=7,
        extra_body={"audio_config": {"duration": 10, "bpm": 90, "format": "wav"}, "batch_size": 2})
    answer, message = raw.parse(), raw.parse().choices[0].message
    assert answer.object == "chat.completion" and answer.model == "acestep/acestep-v15-turbo"
    assert answer.choices[0].finish_reason == "stop"
    assert "**Caption:** lofi piano, rain" in message.content and "**BPM:** 90" in message.content
    assert "## Lyrics\n[Verse]\nrain on the glass" in message.content
    items = raw.http_response.json()["choices"][0]["message"]["audio"]  # upstream's list, not OpenAI's object
    assert [item["audio_url"]["url"][:22] for item in items] == ["data:audio/wav;base64,"] * 2
    samples, rate = decode(_audio(items)[0])
    assert rate == 48_000 and 9.5 <= samples.shape[0] / rate <= 10.5
    assert manager.stats()["jobs"]["succeeded"] == before + 1  # one task in the one queue, both songs


def test_streamed_answer_sends_upstreams_event_sequence(locked_api):
    stream = client(locked_api).chat.completions.create(
        model="acestep/acestep-v15-turbo", messages=[SONG], stream=True,
        extra_body={"audio_config": {"duration": 10}})
    chunks = list(stream)
    deltas = [chunk.choices[0].delta for chunk in chunks]
    assert deltas[0].role == "assistant" and deltas[0].content == ""
    assert len({chunk.id for chunk in chunks}) == 1 and chunks[0].object == "chat.completion.chunk"
    text = "".join(d.content or "" for d in deltas)
    assert "## Metadata" in text and "rain on the glass" in text
    assert sum(1 for d in deltas if d.audio) == 1  # the songs' chunk (its items are read raw below)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_carries_the_song_and_ends_with_done(locked_api):
    body = {"model": "acestep/acestep-v15-turbo", "messages": [SONG], "stream": True,
            "audio_config": {"duration": 10}}
    with httpx.stream("POST", f"{locked_api}/v1/chat/completions", json=body, timeout=300,
                      headers={"Authorization": f"Bearer {KEY}"}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)
    finishes = [json.loads(line[6:])["choices"][0]["finish_reason"] for line in lines[:-1]]
    assert finishes[-1] == "stop" and finishes[:-1] == [None] * (len(finishes) - 1)
    audio = [delta["audio"] for delta in (json.loads(line[6:])["choices"][0]["delta"] for line in lines[:-1])
             if "audio" in delta]
    assert len(audio) == 1 and audio[0][0]["audio_url"]["url"].startswith("data:audio/mpeg;base64,")
    samples, rate = decode(_audio(audio[0])[0])
    assert 9.5 <= samples.shape[0] / rate <= 10.5


def test_chat_refusals_name_the_field_and_need_the_key(locked_api):
    headers = {"Authorization": f"Bearer {KEY}"}
    url = f"{locked_api}/v1/chat/completions"
    assert httpx.post(url, json={"messages": [SONG]}).status_code == 401
    no_planner = httpx.post(url, json={"messages": [{"role": "user", "content": "a sad song about rain"}],
                                       "sample_mode": True}, headers=headers)
    assert no_planner.status_code == 400 and "planner" in no_planner.json()["detail"]
    empty = httpx.post(url, json={"messages": [{"role": "system", "content": "hi"}]}, headers=headers)
    assert empty.status_code == 400 and "No valid prompt" in empty.json()["detail"]
    steps = httpx.post(url, json={"messages": [SONG], "inference_steps": 50}, headers=headers)
    assert steps.status_code == 400 and steps.json()["field"] == "inference_steps"
    with pytest.raises(openai.BadRequestError) as refused:
        client(locked_api).chat.completions.create(model="acestep/acestep-v99", messages=[SONG])
    assert refused.value.body["field"] == "model"  # the client keeps our {"detail", "field"} body


def test_chat_audio_input_is_the_source_of_an_editing_task(locked_api):
    source = base64.b64encode(wav(rate=48_000, seconds=10)).decode()
    body = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "<prompt>jazz cover</prompt>"},
        {"type": "input_audio", "input_audio": {"data": source, "format": "wav"}}]}],
        "task_type": "cover", "audio_cover_strength": 0.5}
    answer = httpx.post(f"{locked_api}/v1/chat/completions", json=body, timeout=300,
                        headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 200, answer.text
    samples, rate = decode(_audio(answer.json()["choices"][0]["message"]["audio"])[0])
    assert 9.5 <= samples.shape[0] / rate <= 10.5  # the source's length
    bad = dict(body, messages=[{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(b"not audio" * 50).decode()}}]}])
    refused = httpx.post(f"{locked_api}/v1/chat/completions", json=bad, headers={"Authorization": KEY})
    assert refused.status_code == 400 and refused.json()["field"] == "src_audio"


def test_chat_with_a_planner_writes_the_song_from_a_description(planner_api):
    answer = client(planner_api).chat.completions.create(
        model="acestep/acestep-v15-turbo", messages=[{"role": "user", "content": "a gentle song about the sea"}],
        extra_body={"audio_config": {"duration": 10}, "sample_mode": True})
    content = answer.choices[0].message.content
    assert "## Metadata" in content and "a gentle song about the sea" not in content  # the planner's caption


# -- /v1/create_sample ----------------------------------------------------------------------------

def test_create_sample_answers_in_upstreams_shape(planner_api):
    body = httpx.post(f"{planner_api}/v1/create_sample", timeout=300, json={
        "query": "an upbeat rock track with heavy guitars", "vocal_language": "en", "temperature": 0.9,
        "ai_token": KEY}).json()
    assert body["code"] == 200 and body["error"] is None and set(body) == {"data", "code", "error", "timestamp",
                                                                            "extra"}
    data = body["data"]
    assert set(data) == {"caption", "lyrics", "bpm", "keyscale", "duration", "timesignature", "vocal_language"}
    assert isinstance(data["caption"], str) and data["caption"] and data["vocal_language"] == "en"
    assert data["bpm"] is None or 30 <= data["bpm"] <= 300


def test_create_sample_alias_instrumental_and_auth(planner_api):
    headers = {"Authorization": f"Bearer {KEY}"}
    body = httpx.post(f"{planner_api}/create_sample", timeout=300, headers=headers,
                      json={"query": "calm piano", "instrumental": True}).json()
    assert body["code"] == 200 and body["data"]["lyrics"].strip()
    assert httpx.post(f"{planner_api}/v1/create_sample", json={"query": "x"}).status_code == 401
    bad = httpx.post(f"{planner_api}/v1/create_sample", headers=headers, json={"temperature": 7})
    assert bad.status_code == 400 and bad.json()["field"] == "temperature"


def test_create_sample_without_a_planner_is_503_like_format_input(api):
    response = httpx.post(f"{api}/v1/create_sample", json={"query": "rock"})
    assert response.status_code == 503 and "planner" in response.json()["detail"]


def test_reinitialize_reports_the_loaded_models_and_needs_the_key(locked_api):
    assert httpx.post(f"{locked_api}/v1/reinitialize").status_code == 401
    body = httpx.post(f"{locked_api}/v1/reinitialize", headers={"Authorization": KEY}).json()
    assert body["code"] == 200 and "Service reinitialized" in body["data"]["message"]
    assert body["data"]["loaded_model"] == "acestep-v15-turbo" and body["data"]["llm_initialized"] is False


# -- failures and disconnects ---------------------------------------------------------------------

def test_a_task_that_fails_answers_by_its_kind(locked_api, manager, monkeypatch):
    headers = {"Authorization": KEY}
    url = f"{locked_api}/v1/chat/completions"
    # A loopback URL passes submission here (private URLs allowed) and fails when the task fetches it.
    monkeypatch.setattr(manager, "audio_policy", replace(manager.audio_policy, allow_private=True))
    nowhere = {"messages": [SONG], "task_type": "cover", "src_audio": f"http://127.0.0.1:{free_port()}/take.wav"}
    fetch = httpx.post(url, json=nowhere, headers=headers, timeout=120)
    assert fetch.status_code == 400 and fetch.json()["detail"].startswith("src_audio ")

    def past_deadline(job):
        raise JobTimedOut("the job ran past its timeout_seconds")

    monkeypatch.setattr(manager.runner, "run", past_deadline)
    late = httpx.post(url, json={"messages": [SONG]}, headers=headers, timeout=120)
    assert late.status_code == 504 and "timeout_seconds" in late.json()["detail"]
    body = {"messages": [SONG], "stream": True}
    with httpx.stream("POST", url, json=body, headers=headers, timeout=120) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    assert events[-1]["choices"][0]["finish_reason"] == "error"
    assert "Error: the job ran past" in events[-2]["choices"][0]["delta"]["content"]


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_leaves_cancels_its_task(locked_api, manager, monkeypatch, stream):
    def run_until_cancelled(job):  # a task that runs until it is told to stop (or 30 s pass)
        job.deadline.cancelled.wait(30)
        job.deadline.check()
        raise GenerationFailed("the task was never cancelled")

    monkeypatch.setattr(manager.runner, "run", run_until_cancelled)
    failed = manager.stats()["jobs"]["failed"]
    body = {"messages": [SONG], "stream": stream}
    if stream:
        with httpx.stream("POST", f"{locked_api}/v1/chat/completions", json=body, timeout=60,
                          headers={"Authorization": KEY}) as response:
            next(response.iter_lines())  # the first chunk: the task is queued
    else:
        with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes the connection
            httpx.post(f"{locked_api}/v1/chat/completions", json=body, timeout=2, headers={"Authorization": KEY})
    deadline = time.time() + 40
    while manager.stats()["jobs"]["failed"] == failed and time.time() < deadline:
        time.sleep(0.1)
    assert manager.stats()["jobs"]["failed"] == failed + 1
    # Cancelled while running, or (a client that leaves at once, on a busy machine) before it started.
    assert max(manager._tasks.values(), key=lambda t: t.created).error in (
        "the job was cancelled", "the task was cancelled before it started")
