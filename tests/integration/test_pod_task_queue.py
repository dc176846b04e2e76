"""The pod's task queue without HTTP: the submission check, timeouts per task, and retention by count and bytes."""

import pytest

from acestep_worker.doors.pod.queue import TaskManager, TaskState
from acestep_worker.errors import InputError
from acestep_worker.schema.request import TimedRequest, parse


# -- pod tasks ------------------------------------------------------------------------------------
def _wait(manager, task, timeout=120):
    assert task.done.wait(timeout)
    return task


def test_pod_tasks_honour_timeout_seconds(engine, tmp_path):
    manager = TaskManager(engine, tmp_path).start()
    try:
        task = _wait(manager, manager.submit(parse({"duration": 600, "timeout_seconds": 1}, TimedRequest)))
        assert task.state is TaskState.FAILED and "timed out after 1 s" in task.error
        assert list(tmp_path.iterdir()) == []
        after = _wait(manager, manager.submit(parse({"duration": 10}, TimedRequest)))
        assert after.state is TaskState.SUCCEEDED
    finally:
        manager.stop()


def test_retention_forgets_the_oldest_tasks_and_their_files(engine, tmp_path):
    manager = TaskManager(engine, tmp_path, max_tasks=2).start()
    try:
        tasks = [_wait(manager, manager.submit(parse({"duration": 10}))) for _ in range(3)]
    finally:
        manager.stop()
    assert manager.get(tasks[0].id) is None and not tasks[0].songs[0].path.exists()
    assert all(manager.get(t.id) is not None and t.songs[0].path.exists() for t in tasks[1:])
    assert not hasattr(tasks[1].songs[0], "data")  # finished audio lives on disk only


def test_retention_caps_the_bytes_kept(engine, tmp_path):
    manager = TaskManager(engine, tmp_path, max_bytes=1).start()  # room for no finished task at all
    try:
        task = _wait(manager, manager.submit(parse({"duration": 10})))
    finally:
        manager.stop()
    assert manager.get(task.id) is None and list(tmp_path.iterdir()) == []


def test_submit_checks_what_every_door_checks_and_creates_nothing_it_refuses(engine, tmp_path):
    """The queue runs the job runner's submission check itself: a door that forgets to check first
    still cannot queue a task the model cannot run."""
    manager = TaskManager(engine, tmp_path)  # not started: nothing may run, nothing may be queued
    for fields, field in (({"inference_steps": 500}, "inference_steps"), ({"task_type": "cover"}, "src_audio"),
                          ({"thinking": True}, "thinking")):
        with pytest.raises(InputError) as refused:
            manager.submit(parse(fields, TimedRequest))
        assert refused.value.field == field
    assert manager.stats()["jobs"]["total"] == 0
    task = manager.submit(parse({"duration": 10, "seed": 3}, TimedRequest))
    assert task.plan.seeds == (3,) and task.plan.length.source == "duration"  # the plan travels with the task
