#!/usr/bin/env bash
# Install optimem and everything it renders and reads with into ./.venv.
#   bash scripts/install.sh            # core + CPU OCR (tesseract, rapidocr)
#   bash scripts/install.sh dev,gpu    # + test tools, torch (CPU build here) and transformers
#   bash scripts/install.sh postgres   # + psycopg, pgqueuer, and the PostgreSQL server (apt) when missing
#   bash scripts/install.sh langchain,server   # what examples/langchain_agent.py and examples/rest_client.py need
#   bash scripts/install.sh docs       # + MkDocs Material and mkdocstrings (.venv/bin/mkdocs serve)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"

# System packages: tesseract's English and Simplified Chinese trained data (the engine itself
# comes inside the tesserocr wheel); with the dev extra, Chromium for the viewer's browser
# tests (Playwright drives /usr/bin/chromium: it cannot download browsers here). Skipped when
# already present.
pkgs=(tesseract-ocr-eng tesseract-ocr-chi-sim)
[[ ",$extras," == *",dev,"* ]] && pkgs+=(chromium)
need=()
for pkg in "${pkgs[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
# The PostgreSQL server, for the postgres extra's tests (they start a throwaway server from its
# binaries) and for trying the scale-out setup on one machine.
if [[ ",$extras," == *",postgres,"* ]] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [[ ",$extras," == *",gpu,"* ]]; then
  # the CPU build of torch that lies on this kind of machine; other versions download GBs
  .venv/bin/python -m pip install -q "torch==2.13.0"
fi
spec="."
all="tesseract${extras:+,$extras}"
.venv/bin/python -m pip install -q -e "${spec}[${all}]"
echo "optimem installed in .venv ($(.venv/bin/optimem --version))"
