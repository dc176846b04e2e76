"""Pod mode: the upstream-compatible HTTP API and the Gradio page in one process, over one task queue."""
