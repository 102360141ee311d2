#!/usr/bin/env bash
# Installs everything audior1 needs on a fresh Debian machine: system packages, a virtualenv with the
# CPU build of PyTorch (installed first, so pip never resolves a multi-GB CUDA build), then audior1 itself.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
APT_PACKAGES=(espeak-ng chromium)  # chromium: only the web-page test drives it

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else SUDO="none"; fi
  if [ "$SUDO" = none ]; then
    echo "warning: cannot install ${missing[*]} (not root, no sudo); tests that need them will skip" >&2
  else
    echo "installing system packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  echo "installing torch==$TORCH_VERSION (CPU build)"
  "$VENV/bin/python" -m pip install -q "torch==$TORCH_VERSION" 2>&1 | grep -v "^WARNING: Location" || true
fi
echo "installing audior1, its LoRA and quantization extras, and its test dependencies"
# within the pinned versions the documented measurements were made with (constraints.txt), unless asked not to
PINS=(-c constraints.txt)
if [ "${AUDIOR1_UNPINNED:-0}" = 1 ]; then PINS=(); echo "(unpinned: the newest versions)"; fi
"$VENV/bin/python" -m pip install -q "${PINS[@]}" -e ".[lora,quant,test]" 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -c "import torch, audior1; print(f'audior1 {audior1.__version__} ready (torch {torch.__version__})')"
