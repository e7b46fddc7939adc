#!/usr/bin/env bash
# jupyter_server's own contents test suites, from the sdist of the installed version, into
# tests_upstream/tests/ (git-ignored), where tests_upstream/tests/conftest.py runs them
# against bookstore with archiving active (see CONTRIBUTING.md). Safe to run again: does
# nothing when the files for the installed version are there.
#
#   bash scripts/fetch-upstream-tests.sh [python]
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${1:-python}
DEST=tests_upstream/tests
FILES=(
  tests/__init__.py
  tests/utils.py
  tests/conftest.py
  tests/services/__init__.py
  tests/services/contents/__init__.py
  tests/services/contents/test_api.py
  tests/services/contents/test_manager.py
  tests/services/contents/test_largefilemanager.py
  tests/services/contents/test_checkpoints.py
)
version=$("$PY" -c 'import jupyter_server; print(jupyter_server.__version__)')
if [ "$(cat "$DEST/.version" 2>/dev/null)" = "$version" ]; then
  exit 0
fi
echo "==> jupyter_server $version's contents tests into $DEST"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The sdist (not the wheel) has the tests. No build isolation: only its metadata is built,
# with the hatchling of the test dependencies.
"$PY" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation \
  "jupyter_server==$version" -d "$work"
tar -xzf "$work/jupyter_server-$version.tar.gz" -C "$work" \
  "${FILES[@]/#/jupyter_server-$version/}"
find "$DEST" -mindepth 1 -not -name conftest.py -delete 2>/dev/null || true
for f in "${FILES[@]}"; do
  target="$DEST/${f#tests/}"
  # Upstream's conftest (its mock extensions) is not used: only its `dirs` list is read.
  [ "$f" = tests/conftest.py ] && target="$DEST/_upstream_conftest.py"
  mkdir -p "$(dirname "$target")"
  cp "$work/jupyter_server-$version/$f" "$target"
done
echo "$version" > "$DEST/.version"
