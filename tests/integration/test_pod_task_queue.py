"""The pod's task queue without HTTP: timeouts per task, and retention by count and bytes."""

from acestep_worker.doors.pod.queue import TaskManager, TaskState
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
