#!/usr/bin/env bash
# Sets up everything `after` needs on a fresh Debian machine, and does nothing that is already done:
# apt packages (FluidSynth + the two training soundfonts, PortAudio, JACK), a virtual environment in
# .venv, the CPU wheel of torch, and the package itself with its dev and live extras.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(fluidsynth fluid-soundfont-gm timgm6mb-soundfont libportaudio2 libsndfile1 jackd2)
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for package in "${APT_PACKAGES[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing apt packages: ${missing[*]}"
    $SUDO apt-get update -qq
    # jackd2 asks whether to enable real-time priority: answer no, without a prompt.
    echo "jackd2 jackd/tweak_rt_limits boolean false" | $SUDO debconf-set-selections || true
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
# The CPU build of torch first, so that nothing later pulls a CUDA build.
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    echo "setup: installing torch==2.13.0 (CPU)"
    "${PIP[@]}" install "torch==2.13.0"
fi
stamp=.venv/.after-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing after and its dependencies"
    "${PIP[@]}" install -e ".[dev,live,transcribe]"
    touch "$stamp"
fi
# Note transcription for `after eval` and `after prepare --midi transcribe` runs basic-pitch's ONNX
# model with onnxruntime. basic-pitch declares tensorflow, so it goes in without its declared
# dependencies; its Python code (which needs librosa) is never imported, only its model file.
if ! .venv/bin/python -c "import basic_pitch" >/dev/null 2>&1; then
    echo "setup: installing basic-pitch's transcription model (--no-deps)"
    "${PIP[@]}" install --no-deps "basic-pitch==0.4.0"
fi
echo "setup: ready ($(.venv/bin/after --version))"
