#!/usr/bin/env bash
# Set up and run every check: lint, types, and the test suite against two independent
# S3 implementations (moto's server mode and SeaweedFS), browser tests included.
# The S3 servers and Jupyter servers are started by the test fixtures themselves.
#
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh -k publish # extra arguments go to both pytest runs
#
# The pytest runs (moto, SeaweedFS, jupyter_server's contents suites) and the lint go side
# by side, each run on BOOKSTORE_TEST_WORKERS pytest-xdist workers (default 2; every worker
# starts its own S3 server, buckets and directories are per test). Their lines are prefixed
# with [moto], [seaweedfs], [jupyter_server] or [lint]; the script fails if any fails.
set -euo pipefail
cd "$(dirname "$0")/.."

begin=$SECONDS
bash scripts/install-browser.sh
bash scripts/setup-env.sh
VENV=${BOOKSTORE_VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
# jupyter_server's own contents tests, from the sdist of the installed version (run below).
bash scripts/fetch-upstream-tests.sh "$VENV/bin/python"

echo "==> set-up done in $((SECONDS - begin)) s"
[ -d node_modules ] || jlpm install

# Lint, types and the frontend's unit tests, alongside the pytest runs below (their lines
# are prefixed with [lint]); the command fails if they fail.
lint() {
  local started=$SECONDS
  echo "==> ruff"
  ruff check bookstore tests bench scripts tests_upstream/tests/conftest.py
  ruff format --check bookstore tests bench scripts tests_upstream/tests/conftest.py
  echo "==> mypy"
  mypy
  echo "==> eslint, prettier and unit tests of the frontend (TypeScript)"
  jlpm lint:check
  jlpm test
  echo "==> lint, types and frontend tests done in $((SECONDS - started)) s"
}

run_lint() {
  set +e
  (set -e; lint) 2>&1 | sed -u "s/^/[lint] /"
  local status=${PIPESTATUS[0]}
  set -e
  return "$status"
}

WORKERS=${BOOKSTORE_TEST_WORKERS:-2}
# --durations: every run's log names its slowest tests, to keep an eye on the time budget.
PYTEST=(python -m pytest -p no:cacheprovider -n "$WORKERS" --dist loadgroup --durations=25)

# One pytest run, its output line-prefixed with its name; its exit status.
run_pytest() {
  local name=$1 backend=$2
  shift 2
  set +e
  BOOKSTORE_TEST_S3=$backend "${PYTEST[@]}" "$@" 2>&1 | sed -u "s/^/[$name] /"
  local status=${PIPESTATUS[0]}
  set -e
  return "$status"
}

echo "==> pytest against moto (server mode) and SeaweedFS (weed mini), side by side," \
  "and jupyter_server's own contents tests against bookstore; lint and types alongside"
# Whatever reads back what S3 stored runs on both. The "surface" tests (pure logic, docs,
# packaging, page links, the shape of HTTP answers: see tests/conftest.py) do not depend on
# the S3 implementation: they run once, in the SeaweedFS run; the browser tests run once, in
# the moto run. That split keeps the two runs about as long as each other (the browser
# tests are the longest part). The upstream contents suites (tests_upstream/, fetched above
# by scripts/fetch-upstream-tests.sh) run on moto.
started=$SECONDS
run_lint &
lint_pid=$!
run_pytest moto moto -m "not surface" "$@" &
moto_pid=$!
run_pytest seaweedfs seaweedfs -m "not browser" "$@" &
seaweedfs_pid=$!
run_pytest jupyter_server moto -c tests_upstream/pytest.ini tests_upstream &
upstream_pid=$!
moto_status=0
seaweedfs_status=0
upstream_status=0
lint_status=0
wait "$lint_pid" || lint_status=$?
wait "$moto_pid" || moto_status=$?
wait "$seaweedfs_pid" || seaweedfs_status=$?
wait "$upstream_pid" || upstream_status=$?
echo "==> exit status: lint $lint_status, pytest moto $moto_status, SeaweedFS $seaweedfs_status," \
  "jupyter_server's contents tests $upstream_status ($((SECONDS - started)) s;" \
  "$((SECONDS - begin)) s for the whole command)"
[ "$lint_status" -eq 0 ] && [ "$moto_status" -eq 0 ] && [ "$seaweedfs_status" -eq 0 ] \
  && [ "$upstream_status" -eq 0 ]
