"""Upstream's fields that this worker does not use are reported in a serverless job's params."""

from acestep_worker.doors.serverless import run_job


def test_serverless_reports_unused_fields_in_params(engine):
    output = run_job(engine, "unused-job", {"duration": 10, "lm_backend": "vllm", "allowLmBatch": False,
                                            "inference_steps": 2}, env={})
    assert set(output["params"]["unused"]) == {"lm_backend", "allow_lm_batch"}
