#!/usr/bin/env bash
# Install optimem with every extra the tests need, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev,gpu,langchain,server,postgres
.venv/bin/ruff check optimem server tests benchmarks scripts examples
.venv/bin/python -m pytest -q "$@"
