"""The pod's one GPU work queue: bounded, FIFO, one generation at a time, results that expire.

The HTTP API and the Gradio page both submit here, so they share one engine and one order of
work. A full queue refuses a task before any record of it exists (no ghost jobs); unknown ids are
simply unknown; failed tasks keep their error message. Each task runs under its own deadline
(`timeout_seconds`, counted from when it starts) and can be cancelled: a queued task is removed, a
running one stops at its next step and leaves no file. Finished tasks keep their songs on disk
only, and are deleted with their files after `ttl_s`, or sooner, oldest first, when more than
`max_tasks` of them or more than `max_bytes` of their audio are kept. The same thread removes, at
start and every minute, the partial files in the output folder that no live process writes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from pathlib import Path

from ...audio.sources import SourcePolicy
from ...delivery.files import SavedSong, job_paths, remove_orphaned_parts
from ...delivery.partial_files import SWEEP_PERIOD_S
from ...errors import AceStepError
from ...pipeline.engine import Engine, Progress
from ...pipeline.plan import JobPlan
from ...runner.deadline import Deadline
from ...runner.job import Job, JobRunner
from ...schema.request import DEFAULT_TIMEOUT_S, GenerationRequest
from . import defaults
from .uploads import clear_stale, discard

log = logging.getLogger(__name__)


class QueueFull(Exception):
    def __init__(self, retry_after_s: int):
        super().__init__("the generation queue is full")
        self.retry_after_s = retry_after_s


class TaskState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass
class Task:
    id: str
    plan: JobPlan  # the submission's: its seeds are the task's
    created: float
    state: TaskState = TaskState.QUEUED
    started: float | None = None
    finished: float | None = None
    progress: float = 0.0
    stage: str = "queued"
    error: str | None = None
    failure: type[BaseException] | None = None  # what ended a failed task (a door may answer by its kind)
    songs: list[SavedSong] = field(default_factory=list)
    model: str = ""
    params: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    random_weights: bool = False
    inputs: list[Path] = field(default_factory=list)  # uploaded files, deleted when the task ends
    sources: dict = field(default_factory=dict)  # `source`/`reference` reports of the decoded audio
    analysis: dict | None = None  # an analysis task's result, in upstream's shape (pipeline/understanding.py)
    done: threading.Event = field(default_factory=threading.Event, repr=False)
    cancelled: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def request(self) -> GenerationRequest:
        return self.plan.request

    @property
    def timeout_s(self) -> float:
        return getattr(self.request, "timeout_seconds", DEFAULT_TIMEOUT_S)  # the page's requests have none

    @property
    def bytes(self) -> int:
        return sum(song.size for song in self.songs)

    @property
    def finished_ok(self) -> bool:
        return self.state is TaskState.SUCCEEDED


class TaskManager:
    def __init__(self, engine: Engine, output_dir: Path, maxsize: int = defaults.QUEUE_MAXSIZE,
                 ttl_s: float = defaults.RESULT_TTL_S, max_tasks: int | None = defaults.RESULT_MAX_TASKS,
                 max_bytes: int | None = defaults.RESULT_MAX_BYTES):
        self.engine = engine
        self.output_dir = Path(output_dir)
        self.maxsize = maxsize
        self.ttl_s = ttl_s
        self.max_tasks, self.max_bytes = max_tasks, max_bytes
        self.input_dir = Path(engine.settings.input_dir)
        self.audio_policy = SourcePolicy.for_pod(engine.settings, self.output_dir)
        self.runner = JobRunner(engine)
        self._queue: queue.Queue[Task | None] = queue.Queue()
        self._pending: deque[str] = deque()
        self._tasks: dict[str, Task] = {}
        self._lock = threading.Lock()
        self._durations: deque[float] = deque([30.0], maxlen=50)
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self.sweep_period_s = SWEEP_PERIOD_S

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> "TaskManager":
        clear_stale(self.input_dir)
        remove_orphaned_parts(self.output_dir)  # a killed process's half-written songs
        for target, name in ((self._work, "generation-worker"), (self._expire_loop, "result-expiry")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout_s: float = 120.0) -> None:
        """Stop after the running task (queued ones are dropped) and wait for the threads."""
        self._stopping.set()
        self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout_s)

    # -- submitting and reading -------------------------------------------------------------------

    def submit(self, request: GenerationRequest, inputs: list[Path] | None = None) -> Task:
        """Check and queue a generation: what the job runner refuses at submission (what the chosen
        model cannot do, what the audio fields say without downloading them) is raised here, and a
        full queue raises QueueFull; either way no task exists. File headers are read: call it off an
        event loop. `inputs` are uploaded files the task owns once it exists (the caller deletes them
        on an error). A bad adapter in the adapter folder is among what the runner refuses: a 400 naming
        loras[i] rather than a failed task."""
        plan = self.runner.check(request, self.audio_policy)
        with self._lock:
            if len(self._pending) >= self.maxsize:
                raise QueueFull(self.retry_after_s())
            task = Task(uuid.uuid4().hex, plan, time.time(), inputs=list(inputs or ()))
            self._tasks[task.id] = task
            self._pending.append(task.id)
            self._queue.put(task)
        return task

    def busy(self) -> bool:
        """True while any task waits or runs (switching models then would pull them out from under it)."""
        with self._lock:
            return bool(self._pending) or any(t.state is TaskState.RUNNING for t in self._tasks.values())

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def cancel(self, task_id: str) -> Task | None:
        """Cancel a task: a queued one leaves the queue now, a running one stops at its next step
        (and writes nothing); a finished one is left as it is. None for an unknown id."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.finished is not None:
                return task
            task.cancelled.set()
            if task.state is TaskState.QUEUED:
                self._pending.remove(task.id)
                self._finish(task, "the task was cancelled before it started")
        return task

    def queue_position(self, task: Task) -> int:
        """1 for the next task to run, 0 when not waiting."""
        with self._lock:
            try:
                return self._pending.index(task.id) + 1
            except ValueError:
                return 0

    def average_job_s(self) -> float:
        return sum(self._durations) / len(self._durations)

    def retry_after_s(self) -> int:
        """A fair guess of when a slot frees up: one average job."""
        return max(1, round(self.average_job_s()))

    def stats(self) -> dict:
        with self._lock:
            states = [t.state for t in self._tasks.values()]
            pending = len(self._pending)
        counts = {s.value: states.count(s) for s in TaskState}
        return {"jobs": {"total": len(states), **counts}, "queue_size": pending, "queue_maxsize": self.maxsize,
                "avg_job_seconds": round(self.average_job_s(), 3)}

    # -- the worker -------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            if task is None or self._stopping.is_set():
                return
            with self._lock:
                if task.state is not TaskState.QUEUED:  # cancelled while it waited
                    continue
                if task.id in self._pending:
                    self._pending.remove(task.id)
                task.state, task.started, task.stage = TaskState.RUNNING, time.time(), "running"
            self._run(task)
            self._enforce_retention()

    def _finish(self, task: Task, error: str) -> None:
        discard(task.inputs)
        task.state, task.stage, task.error, task.finished = TaskState.FAILED, "failed", error, time.time()
        task.done.set()

    def _run(self, task: Task) -> None:
        def on_progress(progress: Progress) -> None:
            task.progress, task.stage = round(progress.fraction, 4), progress.stage

        def on_stage(stage: str) -> None:
            task.stage = stage

        job = Job(task.id, task.plan, Deadline(task.timeout_s, task.cancelled), self.audio_policy,
                  partial(job_paths, self.output_dir, task.id), on_progress=on_progress, on_stage=on_stage)
        try:
            finished = self.runner.run(job)
            task.songs, task.sources, task.timings = finished.songs, finished.sources, finished.timings
            task.model, task.params = finished.result.model, finished.result.params
            task.random_weights, task.analysis = finished.result.random_weights, finished.result.analysis
            task.state, task.progress, task.stage = TaskState.SUCCEEDED, 1.0, "succeeded"
        except AceStepError as exc:  # the runner gives a stopped job the deadline's or the cancel's reason
            task.state, task.stage, task.error, task.failure = TaskState.FAILED, "failed", str(exc), type(exc)
        except Exception as exc:  # a fault of the machine or a bug: report it, keep serving
            log.exception("task %s failed", task.id)
            task.state, task.stage, task.failure = TaskState.FAILED, "failed", type(exc)
            task.error = f"internal error ({type(exc).__name__}); see the server log"
        finally:
            discard(task.inputs)
            task.finished = time.time()
            self._durations.append(task.finished - task.started)
            task.done.set()

    # -- expiry -----------------------------------------------------------------------------------

    def expire(self, now: float | None = None) -> int:
        """Delete finished tasks older than the TTL, and their files. Returns how many went."""
        now = time.time() if now is None else now
        with self._lock:
            old = [t for t in self._tasks.values() if t.finished is not None and now - t.finished > self.ttl_s]
        return self._forget(old)

    def _enforce_retention(self) -> int:
        """Forget the oldest finished tasks (and their files) beyond `max_tasks` or `max_bytes`."""
        with self._lock:
            finished = sorted((t for t in self._tasks.values() if t.finished is not None), key=lambda t: t.finished)
        count, total = len(finished), sum(t.bytes for t in finished)
        drop = []
        for task in finished:
            if (self.max_tasks is None or count <= self.max_tasks) and (self.max_bytes is None or total <= self.max_bytes):
                break
            drop.append(task)
            count, total = count - 1, total - task.bytes
        return self._forget(drop)

    def _forget(self, tasks: list[Task]) -> int:
        with self._lock:
            for task in tasks:
                self._tasks.pop(task.id, None)
        for task in tasks:
            for song in task.songs:
                song.path.unlink(missing_ok=True)
        return len(tasks)

    def _expire_loop(self) -> None:
        swept = time.monotonic()
        while not self._stopping.wait(min(self.sweep_period_s, max(1.0, self.ttl_s / 4))):
            self.expire()
            if time.monotonic() - swept >= self.sweep_period_s:
                remove_orphaned_parts(self.output_dir)  # another process (the CLI, a worker) killed mid-write
                swept = time.monotonic()
