#!/usr/bin/env bash
# The check for a host with a CUDA GPU (it cannot run on this project's CPU-only machines).
#
#   bash benchmarks/gpu_check.sh          # after the README's install command; installs nothing
#
# Runs the quickstart and the LLM quickstart with proxy.device=cuda, precision bf16, then the
# device benchmark on cuda and on cpu side by side; prints trials/hour, step time vs CPU and
# peak GPU memory (torch.cuda.max_memory_allocated), and ends with one SUMMARY line. Sized
# for about 8 minutes on one GPU. Without a CUDA GPU it stops at once with exit 1 — it never
# measures the CPU and calls it a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)" 2>/dev/null; then
  python -c "import torch; print(f'gpu_check: no CUDA GPU visible to torch {torch.__version__} (built with CUDA {torch.version.cuda})')" 2>/dev/null \
    || echo "gpu_check: torch is not installed"
  echo "SUMMARY: gpu_check FAILED: no CUDA GPU on this host"
  exit 1
fi
python -c "import torch; print('gpu_check on', torch.cuda.get_device_name(0), '| torch', torch.__version__)"

WORK="$(mktemp -d)"
DB="sqlite:///$WORK/gpu.db"
for space in quickstart llm-quickstart; do
  echo "== $space on cuda, bf16"
  start=$(date +%s)
  autopeft search "search_spaces/$space.yaml" --storage "$DB" \
    --set "study=gpu-$space" --set proxy.device=cuda --set proxy.precision=bf16 | tail -n 12
  echo "$space wall $(( $(date +%s) - start )) s"
done

echo "== step time and peak memory: cuda vs cpu (benchmarks/devices.py, 3 steps)"
python benchmarks/devices.py --device cuda --steps 3 | tee "$WORK/cuda.txt" | tail -n 12
python benchmarks/devices.py --device cpu --steps 3 | tee "$WORK/cpu.txt" | tail -n 12

python - "$DB" "$WORK" <<'PY'
import re
import statistics
import sys
from pathlib import Path

from autopeft.store import Store

store, work = Store(sys.argv[1]), Path(sys.argv[2])
parts = []
for space in ("quickstart", "llm-quickstart"):
    done = [r for r in store.trials(f"gpu-{space}") if r.status == "complete"]
    if not done:
        parts.append(f"{space}: no completed trial")
        continue
    wall = sum(r.resources.get("wall_time", 0.0) for r in done)
    peak = max(r.resources.get("peak_memory_mb", 0.0) for r in done)
    kinds = {r.resources.get("memory_kind") for r in done}
    if kinds != {"cuda_max_allocated"}:
        sys.exit(f"gpu_check: {space} trials did not run on CUDA (memory figures: {kinds})")
    parts.append(f"{space}: {3600 * len(done) / wall:.0f} trials/h, peak {peak:.0f} MiB GPU")


def steps(path):
    rows = {}
    for line in path.read_text().splitlines():
        m = re.match(r"(encoder|decoder)\s+(\S+)\s+([\d.]+)\s+[\d.]+\s+(\d+)", line)
        if m:
            rows[(m[1], m[2])] = float(m[3])
    return rows


cuda, cpu = steps(work / "cuda.txt"), steps(work / "cpu.txt")
for model in ("encoder", "decoder"):
    if (model, "bf16") in cuda and (model, "fp32") in cpu:
        parts.append(f"{model} bf16 step {cuda[(model, 'bf16')]:.3f} s on cuda vs {cpu[(model, 'fp32')]:.3f} s fp32 on cpu "
                     f"(x{cpu[(model, 'fp32')] / cuda[(model, 'bf16')]:.1f})")
print("SUMMARY: gpu_check " + "; ".join(parts))
PY
