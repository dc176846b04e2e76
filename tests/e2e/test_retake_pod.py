"""Retake through the pod's /release_task over real HTTP: upstream's field names in, each song's retake
seed and upstream's retake_seed_value / retake_variance out."""


import httpx

from ..support.pod import task_items


def test_release_task_takes_a_retake_and_reports_its_seeds(api):
    items = task_items(api, httpx.post(f"{api}/release_task", json={
        "caption": "retake", "duration": 10, "batch_size": 2, "use_random_seed": False, "seed": 6,
        "retake_seed": "60,70", "retake_variance": 0.3}), timeout=120)
    assert [(i["seed"], i["retake_seed"]) for i in items] == [(6, 60), (7, 70)]
    assert items[0]["retake_seed_value"] == "60,70" and items[0]["retake_variance"] == 0.3
    assert "Retake Seeds:** 60,70" in items[0]["generation_info"]


def test_release_task_takes_the_camel_case_names_as_form_fields(api):
    items = task_items(api, httpx.post(f"{api}/release_task", data={
        "caption": "retake", "duration": "10", "retakeSeed": "5", "retakeVariance": "0.5"}), timeout=120)
    assert items[0]["retake_seed"] == 5 and items[0]["retake_variance"] == 0.5


def test_a_bad_retake_variance_is_refused_by_name(api):
    response = httpx.post(f"{api}/release_task", json={"caption": "retake", "retake_variance": 1.5})
    assert response.status_code == 400 and response.json()["field"] == "retake_variance"
    assert "retake_variance must be a number from 0" in response.json()["detail"]
