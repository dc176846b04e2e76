#!/usr/bin/env bash
# The Python packages bench/gpu.py needs that the lent GPU machine lacks (or has too old), as wheels for
# its Python (3.12, x86-64 manylinux), saved in .whl/ (git-ignored) to travel with the working tree.
#
# That machine has no network. Its image holds torch, transformers, tokenizers, huggingface_hub,
# safetensors, numpy, peft and accelerate, but not diffusers, soundfile, soxr or pydantic (the device
# tool's KINDS.md lists what it holds). We carry our locked versions of what it lacks, and of
# transformers/tokenizers/peft, so the engine runs the library versions it is tested with; torch stays
# the machine's own (a CUDA build does not fit the 64 MiB the tree may carry). av is left behind: the
# bench encodes MP3 through libsndfile, and AAC/Opus are not measured there.
#
#   bash bench/device_wheels.sh        # here, once per session; then run bench/gpu_device.sh there
set -euo pipefail
cd "$(dirname "$0")/.."
WANT=(diffusers transformers tokenizers peft regex soundfile cffi pycparser soxr pydantic pydantic-core
      annotated-types typing-inspection typing-extensions)
pins=()
for name in "${WANT[@]}"; do
  pin=$(grep -iE "^${name}==" requirements-lock.txt | cut -d' ' -f1) || { echo "no pin for $name" >&2; exit 1; }
  pins+=("$pin")
done
rm -rf .whl && mkdir .whl
exclude=$(git rev-parse --git-path info/exclude)  # a worktree's .git is a file: ask git where it is
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl "${pins[@]}"
ls .whl
du -sh .whl
