#!/usr/bin/env bash
# bench/gpu.py on a GPU machine without network, as one command:
#
#   bash bench/device_wheels.sh                       # beforehand, where PyPI is reachable: saves .whl/
#   bash bench/gpu_device.sh OUT_DIR [gpu.py args]    # on the GPU machine, with .whl/ copied along
#
# Installs the carried wheels (if any) into a private site that shadows the machine's own packages,
# records the GPU, runs the benchmark with its results file, log and updated bench/README.md written
# into OUT_DIR (so whatever the run reached comes back even if it is stopped), and exits with its status.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash bench/gpu_device.sh OUT_DIR [gpu.py arguments]}
shift
mkdir -p "$out"
if compgen -G ".whl/*.whl" > /dev/null; then
  site=$(mktemp -d /tmp/gpu-bench-site.XXXXXX)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl || exit 1
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; nproc; free -g; } \
  > "$out/machine.txt" 2>&1
python3 bench/gpu.py --out "$out/gpu.json" --readme "$@" 2>&1 | tee "$out/gpu.log"
status=${PIPESTATUS[0]}
cp bench/README.md "$out/README.md"
exit "$status"
