# syntax=docker/dockerfile:1.10
# ACE-Step 1.5 worker: Runpod serverless by default, pod mode (HTTP API + Gradio) with ACESTEP_MODE=pod.
# Build:  DOCKER_BUILDKIT=1 docker build --secret id=hf_token,env=HF_TOKEN -t acestep-worker .
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends software-properties-common ca-certificates curl \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && python3.11 -m venv /opt/venv \
    && apt-get purge -y software-properties-common && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/*
ENV PATH="/opt/venv/bin:$PATH"

# torch 2.13.0 has no CUDA 12.8 build: PyTorch dropped cu128 wheels from 2.12 on (pytorch/pytorch#178665;
# for 2.13 download.pytorch.org carries cu126 and cu130 wheels, none for cu128), and PyPI's own 2.13.0
# Linux wheel is the CUDA 13.0 build (its METADATA requires cuda-toolkit==13.0.3, nvidia-cudnn-cu13),
# which needs an R580+ driver. The cu126 build runs on every driver of the Hub's allowed CUDA versions
# (12.8, 12.9, 13.0) and covers the Ampere and Ada GPUs the Hub file lists; it brings its own CUDA
# libraries, so the base image's CUDA runtime only has to be at least as new. For Blackwell GPUs build
# with TORCH_CUDA=cu130 and allow only CUDA 13.0 hosts.
ARG TORCH_VERSION=2.13.0
ARG TORCH_CUDA=cu126
ARG UV_VERSION=0.13.9
# requirements-lock.txt pins every other package (and torch's pure-Python dependencies) to the
# versions the tests ran with (`make lock`), so an image built next month is the same image. The
# local version label (+cu126) keeps PyPI's CUDA 13 wheel out even though PyPI is searched too.
WORKDIR /app
COPY requirements.txt requirements-serve.txt requirements-lock.txt overrides.txt /app/
RUN pip install --upgrade pip "uv==${UV_VERSION}" \
    && uv pip install --python /opt/venv/bin/python --no-cache "torch==${TORCH_VERSION}+${TORCH_CUDA}" \
       --index-url "https://download.pytorch.org/whl/${TORCH_CUDA}" --extra-index-url https://pypi.org/simple \
       --index-strategy unsafe-best-match -c requirements-lock.txt \
    && uv pip install --python /opt/venv/bin/python --no-cache --override overrides.txt \
       -c requirements-lock.txt -r requirements.txt -r requirements-serve.txt

# Weights: baked before any project code is copied, so code changes never re-download them.
# The token is a BuildKit secret (never an ARG, never in the image history); public repos need none.
COPY src/acestep_worker/models/download.py /tmp/download.py
RUN --mount=type=secret,id=hf_token,env=HF_TOKEN \
    python /tmp/download.py --dir /app/checkpoints main base \
    && rm /tmp/download.py

ENV ACESTEP_CONFIG_PATH=/app/checkpoints/acestep-v15-base \
    ACESTEP_LM_MODEL_PATH=/app/checkpoints/acestep-5Hz-lm-1.7B \
    ACESTEP_API_HOST=0.0.0.0 \
    ACESTEP_API_PORT=8000 \
    ACESTEP_OUTPUT_DIR=/app/outputs \
    ACESTEP_MODE=serverless \
    HF_HUB_OFFLINE=1

COPY pyproject.toml handler.py test_input.json generate_music.py /app/
COPY src /app/src
RUN uv pip install --python /opt/venv/bin/python --no-cache --no-deps /app

EXPOSE 8000 7860
CMD ["python", "-u", "handler.py"]
