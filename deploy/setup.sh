#!/usr/bin/env bash
# One-step set-up on a fresh Debian/Ubuntu machine: system tools, a virtual environment in .venv, the project.
#   bash deploy/setup.sh          # what the node needs
#   bash deploy/setup.sh --test   # plus the real DICOM peers, validators and database the tests talk to
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

packages=(python3-venv)
extras="postgres"
if [ "${1:-}" = "--test" ]; then
  # dcmtk: storescu/storescp/echoscu/dsrdump/dcmpschk; dicom3tools: dciodvfy/dcentvfy; Orthanc: a real PACS;
  # PostgreSQL: the multi-worker database path; PixelMed (Java): the TID 1500 SR validator;
  # Chromium: the browser tests (driven by pip's playwright, which never downloads a browser of its own).
  packages+=(dcmtk dicom3tools orthanc postgresql libpixelmed-java default-jre-headless chromium)
  extras="test"
fi
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# The CPU build of PyTorch first: a bare "torch" requirement would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[${extras}]"
echo "set-up done: $(.venv/bin/python --version), torch $(.venv/bin/python -c 'import torch; print(torch.__version__)')"
