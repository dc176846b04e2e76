"""A job's deadline: its reasons for stopping."""

import pytest

from acestep_worker.errors import GenerationCancelled
from acestep_worker.runner.deadline import Deadline, JobTimedOut


def test_deadline_reasons():
    clock = {"t": 0.0}
    deadline = Deadline(5, clock=lambda: clock["t"])
    assert not deadline() and deadline.remaining() == 5
    clock["t"] = 6
    assert deadline() and deadline.remaining() == 0
    with pytest.raises(JobTimedOut, match="timed out after 5 s"):
        deadline.check()
    deadline.cancel()
    with pytest.raises(GenerationCancelled, match="cancelled"):
        deadline.check()
