"""The `serve` command's flags, parsed in-process."""


def test_serve_flags_override_the_variables(monkeypatch):
    from acestep_worker.doors import cli
    from acestep_worker.doors.pod import launch

    seen = {}
    monkeypatch.setattr(launch, "serve", lambda env=None: seen.update(env))
    monkeypatch.setenv("ACESTEP_API_PORT", "8000")
    assert cli.main(["serve", "--host", "127.0.0.1", "--port", "9000", "--gradio-port", "0"]) == 0
    assert (seen["ACESTEP_API_HOST"], seen["ACESTEP_API_PORT"], seen["ACESTEP_GRADIO_PORT"]) == ("127.0.0.1", "9000", "0")
