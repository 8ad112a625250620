#!/usr/bin/env bash
# Install optimem with every extra the tests need, then lint, type-check and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev,gpu,langchain,server,postgres,mcp
code=(optimem server tests benchmarks scripts examples)
.venv/bin/ruff check "${code[@]}"
.venv/bin/ruff format --check "${code[@]}"
.venv/bin/mypy optimem server
.venv/bin/python -m pytest -q "$@"
