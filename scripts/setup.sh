#!/usr/bin/env bash
# Set up metaloss on a fresh machine, re-runnable: PyTorch first, then the package.
#
#   bash scripts/setup.sh            # CPU PyTorch + metaloss (editable)
#   bash scripts/setup.sh dev        # ... plus the test and lint tools (what CI runs)
#   bash scripts/setup.sh --cuda     # the CUDA build of PyTorch instead (or METALOSS_CUDA=1)
#   bash scripts/setup.sh --dry-run  # print the pip commands instead of running them
#
# Which PyTorch: by default the CPU wheel from the PyTorch CPU index
# ($METALOSS_TORCH_INDEX_URL, default https://download.pytorch.org/whl/cpu), if that index
# answers within a few seconds. If it does not (e.g. a machine that reaches only a package
# mirror), torch comes from pip's default index: on Linux x86-64 from PyPI that is the CUDA
# build (several GB), from a mirror whatever it serves. The script says which index it used and,
# at the end, which build it got (CPU-only or CUDA) — it never claims a CPU build it did not get.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION="2.13.0"
CPU_INDEX="${METALOSS_TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
PROBE_SECONDS="${METALOSS_PROBE_SECONDS:-5}"
extras=""
cuda="${METALOSS_CUDA:-0}"
dry_run=0
for arg in "$@"; do
  case "$arg" in
    dev) extras="[dev]" ;;
    --cuda) cuda=1 ;;
    --dry-run) dry_run=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (expected dev, --cuda, --dry-run)" >&2; exit 2 ;;
  esac
done

run() {
  if [ "$dry_run" = 1 ]; then echo "would run: $*"; else "$@"; fi
}

reachable() {  # does the index answer within PROBE_SECONDS? (no download, a small request)
  python - "$1" "$PROBE_SECONDS" <<'EOF'
import sys, urllib.request
url, seconds = sys.argv[1].rstrip("/") + "/torch/", float(sys.argv[2])
try:
    urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=seconds)
except Exception:
    sys.exit(1)
EOF
}

if [ "$cuda" = 1 ]; then
  echo "setup.sh: --cuda: torch==$TORCH_VERSION from pip's default index (on Linux x86-64 from PyPI: the CUDA build)"
  torch_source=()
elif reachable "$CPU_INDEX"; then
  echo "setup.sh: torch==$TORCH_VERSION CPU build from $CPU_INDEX"
  torch_source=(--index-url "$CPU_INDEX")
else
  echo "setup.sh: $CPU_INDEX did not answer within ${PROBE_SECONDS}s; torch==$TORCH_VERSION from pip's default index instead (from PyPI on Linux x86-64 that is the CUDA build; a mirror may serve a CPU build)"
  torch_source=()
fi

run python -m pip install --quiet --upgrade pip
run python -m pip install --quiet "torch==$TORCH_VERSION" ${torch_source[@]+"${torch_source[@]}"}
run python -m pip install --quiet -e ".$extras"
if [ "$dry_run" = 1 ]; then exit 0; fi
python - <<'EOF'
import torch

import metaloss

build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
print(f"metaloss {metaloss.__version__} ready (torch {torch.__version__}, {build})")
EOF
