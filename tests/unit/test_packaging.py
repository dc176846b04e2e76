"""The Docker image and the Runpod Hub files, checked statically (no Docker engine exists here)."""

import json
import re

import jsonschema
import pytest

from ..support.repo import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()


def _instructions():
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_base_image_is_cuda_12_8_runtime():
    base = next(i for i in _instructions() if i.startswith("FROM "))
    assert re.match(r"FROM nvidia/cuda:12\.8\.\d+-(cudnn-)?runtime-ubuntu\d+\.\d+$", base), base


def test_python_3_11_and_a_torch_build_that_exists():
    """torch 2.13 ships no cu128 wheels; the cu126 build is pinned by its local version label."""
    assert "python3.11" in DOCKERFILE
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE, re.M))
    assert args["TORCH_VERSION"] == "2.13.0" and args["TORCH_CUDA"] == "cu126"
    assert '"torch==${TORCH_VERSION}+${TORCH_CUDA}"' in DOCKERFILE
    assert '--index-url "https://download.pytorch.org/whl/${TORCH_CUDA}"' in DOCKERFILE


def _requirements(name: str) -> list:
    from packaging.requirements import Requirement

    lines = (REPO / name).read_text().splitlines()
    return [Requirement(line.split("#")[0]) for line in lines if line.split("#")[0].strip()]


def test_the_image_installs_the_lock_and_the_lock_pins_every_requirement():
    from packaging.utils import canonicalize_name

    installs = [i for i in _instructions() if "uv pip install" in i and "--no-deps" not in i]
    assert installs and all(i.count("-c requirements-lock.txt") == i.count("uv pip install") for i in installs)
    assert re.search(r'"uv==\$\{UV_VERSION\}"', DOCKERFILE)
    pins = {canonicalize_name(r.name): r for r in _requirements("requirements-lock.txt")}
    assert all(len(r.specifier) == 1 and next(iter(r.specifier)).operator == "==" for r in pins.values())
    for wanted in _requirements("requirements.txt") + _requirements("requirements-serve.txt"):
        pin = pins.get(canonicalize_name(wanted.name))
        assert pin is not None, f"{wanted.name} is not in requirements-lock.txt (run make lock)"
        version = next(iter(pin.specifier)).version
        assert wanted.specifier.contains(version, prereleases=True), f"lock {pin} breaks {wanted}"
    assert {"sympy", "networkx", "filelock"} <= set(pins)  # torch's own Python dependencies too
    assert "torch" not in pins  # it comes from the CUDA index, pinned by version and label


def test_pyproject_declares_the_requirement_files_as_dependencies_and_extras():
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    dist = apply_configuration(Distribution(), REPO / "pyproject.toml")
    names = lambda reqs: {str(r).split("<")[0].split(">")[0].split("~")[0].split("=")[0] for r in reqs}
    assert {"torch", "diffusers", "transformers", "soundfile"} <= names(dist.install_requires)
    assert {"runpod", "fastapi", "gradio"} <= names(dist.extras_require["serve"])
    assert {"pytest", "runpod"} <= names(dist.extras_require["dev"])


def test_weights_are_baked_with_a_secret_before_the_code_is_copied():
    lines = _instructions()
    download = next(i for i, line in enumerate(lines) if "download.py --dir /app/checkpoints" in line)
    assert "--mount=type=secret,id=hf_token" in lines[download]
    code_copies = [i for i, line in enumerate(lines) if line.startswith("COPY") and ("src" in line.split()[1:-1]
                   or "handler.py" in line)]
    assert code_copies and min(code_copies) > download
    assert not any(line.startswith("ARG") and "TOKEN" in line.upper() for line in lines)


def test_environment_defaults():
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(l for l in _instructions() if l.startswith("ENV"))))
    assert env["ACESTEP_CONFIG_PATH"] == "/app/checkpoints/acestep-v15-base"
    assert env["ACESTEP_LM_MODEL_PATH"] == "/app/checkpoints/acestep-5Hz-lm-1.7B"
    assert env["ACESTEP_API_PORT"] == "8000" and env["HF_HUB_OFFLINE"] == "1"
    assert "main base" in DOCKERFILE  # turbo (in main) is baked beside the base default


def test_cmd_is_the_serverless_handler():
    assert _instructions()[-1] == 'CMD ["python", "-u", "handler.py"]'


def test_dockerignore_keeps_weights_and_venvs_out_of_the_context():
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "checkpoints", "tiny-checkpoints", "outputs"} <= set(ignored)


def test_every_copied_file_exists():
    for line in _instructions():
        if line.startswith("COPY") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), source


HUB_SCHEMA = {
    "type": "object", "required": ["title", "description", "type", "category", "config"],
    "properties": {
        "title": {"type": "string", "minLength": 1}, "description": {"type": "string", "minLength": 1},
        "type": {"const": "serverless"},
        "category": {"enum": ["audio", "embedding", "language", "video", "image"]},
        "iconUrl": {"type": "string"},
        "config": {
            "type": "object", "required": ["runsOn", "containerDiskInGb", "gpuIds", "gpuCount"],
            "properties": {
                "runsOn": {"enum": ["GPU", "CPU"]}, "containerDiskInGb": {"type": "integer", "minimum": 1},
                "gpuIds": {"type": "string", "pattern": r"^-?[A-Z0-9_ a-zA-Z]+(,-?[A-Z0-9_ a-zA-Z]+)*$"},
                "gpuCount": {"type": "integer", "minimum": 1},
                "allowedCudaVersions": {"type": "array", "items": {"type": "string", "pattern": r"^\d+\.\d+$"}},
                "presets": {"type": "array", "items": {"type": "object", "required": ["name", "defaults"]}},
                "env": {"type": "array", "items": {"type": "object", "required": ["key"], "oneOf": [
                    {"required": ["value"]},
                    {"required": ["input"], "properties": {"input": {
                        "type": "object", "required": ["name", "type", "description"],
                        "properties": {"type": {"enum": ["string", "number", "boolean", "huggingface"]},
                                       "options": {"type": "array", "items": {
                                           "type": "object", "required": ["label", "value"]}}}}}}]}},
            }},
    },
}
TESTS_SCHEMA = {
    "type": "object", "required": ["tests", "config"],
    "properties": {
        "tests": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "input", "timeout"],
            "properties": {"name": {"type": "string"}, "input": {"type": "object", "not": {"required": ["input"]}},
                           "timeout": {"type": "integer", "minimum": 1000}}}},
        "config": {"type": "object", "required": ["gpuTypeId", "gpuCount"],
                   "properties": {"allowedCudaVersions": {"type": "array", "items": {"type": "string"}}}},
    },
}
VALID_POOLS = {"AMPERE_16", "AMPERE_24", "ADA_24", "AMPERE_48", "ADA_48_PRO", "AMPERE_80", "ADA_80_PRO", "HOPPER_141"}


def test_hub_json_matches_the_documented_schema():
    hub = json.loads((REPO / ".runpod" / "hub.json").read_text())
    jsonschema.validate(hub, HUB_SCHEMA)
    pools = {p for p in hub["config"]["gpuIds"].split(",") if not p.startswith("-")}
    assert pools <= VALID_POOLS and "AMPERE_16" not in pools  # two DiTs + encoders need more than 16 GB
    keys = {e["key"] for e in hub["config"]["env"]}
    assert {"ACESTEP_CONFIG_PATH", "BUCKET_ENDPOINT_URL", "BUCKET_ACCESS_KEY_ID", "BUCKET_SECRET_ACCESS_KEY",
            "LOG_LEVEL"} <= keys
    assert "12.8" in hub["config"]["allowedCudaVersions"]


def test_tests_json_is_a_short_seeded_job_that_our_schema_accepts():
    from acestep_worker.schema.request import JobRequest, parse

    tests = json.loads((REPO / ".runpod" / "tests.json").read_text())
    jsonschema.validate(tests, TESTS_SCHEMA)
    for case in tests["tests"]:
        request = parse(case["input"], JobRequest)
        assert request.seed is not None and request.duration <= 30
        assert request.timeout_seconds * 1000 < case["timeout"]


@pytest.mark.parametrize("path", ["test_input.json"])
def test_test_input_is_valid(path):
    from acestep_worker.schema.request import JobRequest, parse

    parse(json.loads((REPO / path).read_text())["input"], JobRequest)


def _hub() -> dict:
    return json.loads((REPO / ".runpod" / "hub.json").read_text())


def test_hub_presets_state_each_models_real_default_steps():
    from acestep_worker.models.variants import detect_variant

    for preset in _hub()["config"]["presets"]:
        claimed = re.search(r"(\d+) steps", preset["name"])
        folder = preset["defaults"]["ACESTEP_CONFIG_PATH"].rsplit("/", 1)[1]
        config = json.loads((REPO / "tests" / "golden" / "real_configs" / f"{folder}.config.json").read_text())
        if claimed:
            assert int(claimed.group(1)) == detect_variant(folder, config).rules.default_steps, preset["name"]


def test_hub_can_turn_the_planner_off():
    from acestep_worker.settings import Settings

    planner = next(e for e in _hub()["config"]["env"] if e["key"] == "ACESTEP_LM_MODEL_PATH")
    values = {o["label"]: o["value"] for o in planner["input"]["options"]}
    assert Settings.from_env({"ACESTEP_LM_MODEL_PATH": values["off"]}).lm_path is None
    assert planner["input"]["default"] == values["on (1.7B planner)"] == "/app/checkpoints/acestep-5Hz-lm-1.7B"


def test_hub_icon_is_the_shipped_svg_not_a_placeholder():
    import base64

    icon = _hub()["iconUrl"]
    assert icon.startswith("data:image/svg+xml;base64,") and "dummyimage" not in icon
    svg = base64.b64decode(icon.split(",", 1)[1])
    assert svg == (REPO / ".runpod" / "icon.svg").read_bytes() and svg.startswith(b"<svg")
