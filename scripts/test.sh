#!/usr/bin/env bash
# Install optimem with every extra the tests need, then lint, type-check, build the docs and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev,gpu,train,langchain,server,postgres,mcp,docs
code=(optimem tests benchmarks scripts examples)
.venv/bin/ruff check "${code[@]}"
.venv/bin/ruff format --check "${code[@]}"
.venv/bin/mypy optimem
# the documentation site, built outside the checkout: a dead link or a renamed API name fails here
site="$(mktemp -d)"
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict -q -d "$site"
rm -rf "$site"
# two workers: the suite waits on servers, PostgreSQL and worker processes for much of its time
# (1.16 cores busy on average when serial), so two use the 2-core CI machine better
.venv/bin/python -m pytest -q -p xdist -n 2 "$@"
