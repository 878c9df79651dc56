#!/usr/bin/env bash
# Set up metaloss on a fresh machine: CPU PyTorch first (an unpinned torch would pull a
# multi-GB CUDA build), then the package. `bash scripts/setup.sh dev` adds test/lint tools.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0"
if [ "${1:-}" = "dev" ]; then
  python -m pip install --quiet -e ".[dev]"
else
  python -m pip install --quiet -e .
fi
python -c "import metaloss, torch; print(f'metaloss {metaloss.__version__} ready (torch {torch.__version__})')"
