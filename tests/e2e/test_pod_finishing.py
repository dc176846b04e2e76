"""The finishing fields through the pod's /release_task over HTTP, as JSON and as a multipart form:
the float WAV it serves carries the peak and the fades asked for; a bad value is a 400 naming the
field. Upstream's own /release_task does not read these fields (its songs get the defaults); this
server accepts them on every door."""

import json
import time

import httpx
import numpy as np
import pytest

from acestep_worker.audio.encode import decode


def _song(api, send, info: list | None = None) -> np.ndarray:
    body = send(f"{api}/release_task").json()
    task_id = body["data"]["task_id"]
    deadline = time.time() + 180
    while time.time() < deadline:
        entry = httpx.post(f"{api}/query_result", json={"task_id_list": [task_id]}).json()["data"][0]
        if entry["status"] != 0:
            break
        time.sleep(0.2)
    assert entry["status"] == 1, entry
    item = json.loads(entry["result"])[0]
    if info is not None:
        info.append(item["generation_info"])
    audio, rate = decode(httpx.get(api + item["file"]).content)
    assert rate == 48_000
    return audio


def test_json_body_sets_the_peak_and_the_fades(api):
    audio = _song(api, lambda url: httpx.post(url, json={
        "caption": "pod finish", "duration": 10, "seed": 2, "audio_format": "wav32", "normalization_db": -6,
        "fade_in_duration": 1, "fade_out_duration": 1}))
    assert 0.25 < np.abs(audio).max() <= 10 ** (-6 / 20) + 1e-7  # a -6 dBFS peak (unless it was faded)
    assert (audio[0] == 0).all() and (audio[-1] == 0).all()


def test_a_multipart_form_switches_normalisation_off_by_its_camel_case_name(api):
    fields = {"prompt": "pod finish", "audio_duration": "10", "seed": "2", "audio_format": "wav32"}
    info = []
    default = _song(api, lambda url: httpx.post(url, data=fields, files={"unused": ("a.txt", b"x")}), info)
    off = _song(api, lambda url: httpx.post(url, data={**fields, "enableNormalization": "false"},
                                            files={"unused": ("a.txt", b"x")}), info)
    assert " dB" in info[0].split("Peak normalization:**")[1] and "Peak normalization:** off" in info[1]
    assert np.abs(default).max() == pytest.approx(10 ** (-1 / 20), rel=1e-6)  # upstream's default
    ratio = np.abs(default).max() / np.abs(off).max()
    np.testing.assert_allclose(default, off * ratio, rtol=1e-5, atol=1e-7)  # one gain for the whole song


@pytest.mark.parametrize("body, field", [({"normalization_db": 1}, "normalization_db"),
                                         ({"fade_in_duration": -2}, "fade_in_duration"),
                                         ({"latentRescale": 0}, "latentRescale")])
def test_a_bad_value_is_a_400_naming_the_field(api, body, field):
    response = httpx.post(f"{api}/release_task", json={"duration": 10, **body})
    assert response.status_code == 400 and response.json()["field"] == field
