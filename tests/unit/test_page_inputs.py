"""The Gradio page's inputs table: clients and pages that disagree with it are refused by name, and the
task choices come from the schema."""

import pytest

from acestep_worker.doors.pod.page.edit_controls import _choices
from acestep_worker.doors.pod.page.inputs import INPUT_NAMES, client_args, ordered


def test_a_client_or_a_page_that_disagrees_with_the_table_is_refused_by_name():
    with pytest.raises(TypeError, match="cannot send /generate repaint_start"):
        client_args(repaint_start=0.2)
    with pytest.raises(TypeError, match="cannot send /generate mode"):
        client_args(mode="simple")
    with pytest.raises(RuntimeError, match=r"missing \['lora_scale'\], not in the table \['lora_weight'\]"):
        ordered({**{name: name for name in INPUT_NAMES if name != "lora_scale"}, "lora_weight": 1})


def test_the_task_choices_come_from_the_schema():
    assert "text2music" in _choices("task_type") and _choices("no_such_field") == []
