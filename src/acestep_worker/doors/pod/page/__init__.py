"""The Gradio page: its form, editing and adapter controls, and the table of its inputs."""
