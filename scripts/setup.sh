#!/usr/bin/env bash
# Installs what vla_gym needs on a fresh Debian/Ubuntu machine: Mesa for headless rendering,
# ffmpeg for videos, and a virtual environment in .venv with the project and its extras.
# Idempotent: a second run only checks. EXTRAS overrides the extras (default: all,dev).
set -euo pipefail
cd "$(dirname "$0")/.."

system_packages=(libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 libglib2.0-0 ffmpeg)
missing=()
for pkg in "${system_packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing system packages: ${missing[*]}"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build on a CPU machine.
.venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" install "torch==${TORCH_VERSION:-2.13.0}"
# Keep that torch while the extras resolve: otherwise a dependency's newest torchvision
# (pulled in by hf-libero) upgrades torch to a CUDA build.
torch_version=$(.venv/bin/python -c "import torch; print(torch.__version__.split('+')[0])")
"${pip[@]}" install -e ".[${EXTRAS:-all,dev}]" "torch==${torch_version}"
echo "setup: ready (.venv)"
