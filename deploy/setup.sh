#!/usr/bin/env bash
# One-step set-up on a fresh Debian/Ubuntu machine: system tools, a virtual environment in .venv, the project.
#   bash deploy/setup.sh          # what the node needs
#   bash deploy/setup.sh --test   # plus the real DICOM peers, validators, database and web viewer the tests use
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

packages=(python3-venv)
extras="postgres"
if [ "${1:-}" = "--test" ]; then
  # dcmtk: storescu/storescp/echoscu/dsrdump/dcmpschk; dicom3tools: dciodvfy/dcentvfy; Orthanc: a real PACS;
  # PostgreSQL: the multi-worker database path; PixelMed (Java): the TID 1500 SR validator.
  # The web viewer test: Orthanc's DICOMweb plugin, nginx serving OHIF and Orthanc on one origin, Chromium
  # (driven by Playwright for Python), Node.js/npm to fetch OHIF's published build.
  packages+=(dcmtk dicom3tools orthanc postgresql libpixelmed-java default-jre-headless
             orthanc-dicomweb nginx-light chromium)
  command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
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
if [ "${1:-}" = "--test" ]; then
  # OHIF's published viewer (npm @ohif/app: its prebuilt dist/), pinned; npm checks the registry's integrity hash.
  OHIF_VERSION=3.13.2
  ohif=.cache/ohif
  if [ "$(cat "$ohif/version" 2>/dev/null)" != "$OHIF_VERSION" ] || [ ! -f "$ohif/dist/index.html" ]; then
    rm -rf "$ohif" && mkdir -p "$ohif"
    (cd "$ohif" && npm pack --silent "@ohif/app@$OHIF_VERSION" >/dev/null && tar -xzf ohif-app-*.tgz package/dist \
      && mv package/dist dist && rm -rf package ohif-app-*.tgz)
    echo "$OHIF_VERSION" > "$ohif/version"
  fi
fi
echo "set-up done: $(.venv/bin/python --version), torch $(.venv/bin/python -c 'import torch; print(torch.__version__)')"
