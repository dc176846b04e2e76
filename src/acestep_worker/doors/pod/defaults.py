"""The pod's defaults, written once: PodSettings (and so its environment variables), TaskManager and
the API's settings all read them from here. Imports nothing, so any module may use it.
"""

from __future__ import annotations

HOST = "0.0.0.0"
API_PORT = 8000  # ACESTEP_API_PORT
GRADIO_PORT = 7860  # ACESTEP_GRADIO_PORT (0: no page)
QUEUE_MAXSIZE = 200  # ACESTEP_QUEUE_MAXSIZE: tasks waiting; one more is a 429
RESULT_TTL_S = 86_400.0  # ACESTEP_RESULT_TTL: a finished task and its files are kept this long
RESULT_MAX_TASKS = 500  # ACESTEP_RESULT_MAX_TASKS: finished tasks kept, oldest go first
RESULT_MAX_BYTES = 5_000_000_000  # ACESTEP_RESULT_MAX_MB: their audio on disk
MAX_BODY_BYTES = 64_000_000  # ACESTEP_MAX_BODY_MB: the largest request body either app reads
