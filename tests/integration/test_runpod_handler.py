"""handler.py imported (the worker does not start) and called in-process with the session's engine."""

import asyncio

import pytest
import torch


def _job(**fields):
    return {"id": "job-h", "input": {"caption": "test", "duration": 10, **fields}}


def test_import_does_not_start_the_worker(handler_module):
    assert callable(handler_module.handler) and handler_module._engine is not None


def test_async_handler_returns_the_output(handler_module):
    out = asyncio.run(handler_module.handler(_job(seed=1)))
    assert out["status"] == "completed" and out["results"][0]["seed"] == 1


def test_bad_input_returns_one_error_string(handler_module):
    out = asyncio.run(handler_module.handler(_job(duration=1000)))
    assert set(out) == {"error"} and "duration must be seconds between 10 and 600" in out["error"]
    assert set(handler_module.handle({"id": "x"})) == {"error"}  # no input at all


def test_out_of_memory_asks_for_a_fresh_worker_and_next_job_succeeds(handler_module, monkeypatch):
    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(handler_module._engine, "run", oom)
    out = handler_module.handle(_job())
    assert out["refresh_worker"] is True and "ran out of memory" in out["error"]
    monkeypatch.undo()
    assert handler_module.handle(_job())["status"] == "completed"


def test_cancelling_the_task_stops_the_engine(handler_module):
    async def scenario():
        task = asyncio.create_task(handler_module.handler(_job(duration=120)))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert handler_module.handle(_job())["status"] == "completed"  # the engine is free again


def test_fitness_check_fails_when_models_did_not_load(handler_module, monkeypatch):
    handler_module.models_loaded()  # loaded: passes
    monkeypatch.setattr(handler_module, "_engine", None)
    monkeypatch.setattr(handler_module, "_load_error", "DiT checkpoint folder does not exist (/x)")
    with pytest.raises(RuntimeError, match="does not exist"):
        handler_module.models_loaded()
    assert "could not load its models" in handler_module.handle(_job())["error"]
