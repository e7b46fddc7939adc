#!/usr/bin/env bash
# Set up and run every check: lint, types, and the test suite against two independent
# S3 implementations (moto's server mode, then SeaweedFS), browser tests included.
# The S3 servers and Jupyter servers are started by the test fixtures themselves.
#
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh -k publish # extra arguments go to both pytest runs
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-browser.sh
bash scripts/setup-env.sh
VENV=${BOOKSTORE_VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"

echo "==> ruff"
ruff check bookstore tests bench scripts
ruff format --check bookstore tests bench scripts
echo "==> mypy"
mypy
echo "==> eslint, prettier and unit tests of the frontend (TypeScript)"
[ -d node_modules ] || jlpm install
jlpm lint:check
jlpm test

echo "==> pytest against moto (server mode)"
BOOKSTORE_TEST_S3=moto python -m pytest -p no:cacheprovider "$@"

echo "==> pytest against SeaweedFS (weed mini)"
# The browser tests and the "surface" tests (pure logic, docs, packaging, page links, the
# shape of HTTP answers: see tests/conftest.py) do not depend on the S3 implementation.
BOOKSTORE_TEST_S3=seaweedfs python -m pytest -p no:cacheprovider -m "not browser and not surface" "$@"
