#!/usr/bin/env bash
# Shared set-up for scripts/test.sh and scripts/demo.sh: a virtualenv in .venv with
# bookstore and everything its tests and demo need. Safe to run again: when nothing that
# goes into the install changed since the last run (pyproject.toml, setup.py,
# jupyter-config/, the bookstore/ sources and the frontend's src/, style/ and package
# files, hashed into $VENV/.bookstore-install-stamp),
# it installs nothing. BOOKSTORE_REINSTALL=1 forces the install.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}

# Building the frontend extension (done by `pip install .`) needs node.
bash scripts/install-node.sh

VENV=${BOOKSTORE_VENV:-.venv}
STAMP="$VENV/.bookstore-install-stamp"

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi

# The hub tests (tests/test_hub.py) run JupyterHub, whose proxy is configurable-http-proxy
# from npm: installed into the virtualenv when missing.
if [ ! -x "$VENV/node_modules/.bin/configurable-http-proxy" ]; then
  echo "==> installing configurable-http-proxy (npm) into $VENV/node_modules"
  npm install --prefix "$VENV" --no-audit --no-fund --silent configurable-http-proxy@5
fi

sources_hash() {
  find pyproject.toml setup.py jupyter-config bookstore src style package.json yarn.lock \
    tsconfig.json install.json -type f -not -path '*/__pycache__/*' \
    -not -path 'bookstore/labextension/*' -not -name '*.pyc' -print0 \
    | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}
HASH=$(sources_hash)
if [ "${BOOKSTORE_REINSTALL:-0}" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
  echo "==> $VENV is up to date with this checkout (BOOKSTORE_REINSTALL=1 to reinstall)"
  exit 0
fi

rm -f "$STAMP"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
echo "==> installing bookstore and its test/dev dependencies into $VENV"
# A regular (not editable) install, so the jupyter-config file that enables the server
# extension and the prebuilt frontend in share/jupyter/labextensions are installed exactly
# as users get them. The build hook compiles the frontend with node (jlpm) when src/ is
# newer than bookstore/labextension.
# The wheel is built once and installed from the file, first over any older copy, then with
# the dev extras. It is built in the virtualenv itself, with the build requirements of
# pyproject.toml installed there first (the dev install needs JupyterLab anyway): pip's
# isolated build environment would install JupyterLab and its dependencies a second time.
WHEELS=$(mktemp -d)
trap 'rm -rf "$WHEELS"' EXIT
"$VENV/bin/python" - <<'PY' >"$WHEELS/build-requirements.txt"
try:
    import tomllib
except ImportError:  # Python 3.10: the copy pip carries
    from pip._vendor import tomli as tomllib

with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["build-system"]["requires"]))
PY
"$VENV/bin/python" -m pip install --quiet -r "$WHEELS/build-requirements.txt"
# The build hook runs the virtualenv's jlpm (from JupyterLab): on PATH for the build.
PATH="$(cd "$VENV" && pwd)/bin:$PATH" \
  "$VENV/bin/python" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$WHEELS" .
WHEEL=$(echo "$WHEELS"/bookstore-*.whl)
"$VENV/bin/python" -m pip install --quiet --upgrade --force-reinstall --no-deps "$WHEEL"
"$VENV/bin/python" -m pip install --quiet "$WHEEL[dev]"
echo "$HASH" > "$STAMP"
