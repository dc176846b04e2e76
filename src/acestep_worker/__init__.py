"""ACE-Step 1.5 music generation as a service: one engine behind a Runpod worker, an HTTP API,
a Gradio page and a command-line client."""

__version__ = "0.1.0"
