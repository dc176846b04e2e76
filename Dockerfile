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

ARG TORCH_VERSION=2.13.0
RUN pip install --upgrade pip \
    && pip install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cu128

WORKDIR /app
COPY requirements.txt requirements-serve.txt overrides.txt /app/
RUN pip install uv \
    && uv pip install --python /opt/venv/bin/python --no-cache --override overrides.txt \
       -r requirements.txt -r requirements-serve.txt

# Weights: baked before any project code is copied, so code changes never re-download them.
# The token is a BuildKit secret (never an ARG, never in the image history); public repos need none.
COPY src/acestep_worker/download.py /tmp/download.py
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
