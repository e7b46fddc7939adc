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
"$VENV/bin/python" - "$WHEELS" <<'PY'
# build-requirements.txt: pyproject.toml's [build-system] requires; dev-requirements.txt:
# what bookstore[dev] needs (its dependencies and extras, bookstore itself left out).
import re
import sys

try:
    import tomllib
except ImportError:  # Python 3.10: the copy pip carries
    from pip._vendor import tomli as tomllib

with open("pyproject.toml", "rb") as f:
    pyproject = tomllib.load(f)
project = pyproject["project"]
extras = project["optional-dependencies"]
wanted: list[str] = []
seen: set[str] = set()


def add(requirements: list[str]) -> None:
    for requirement in requirements:
        self_extras = re.fullmatch(r"bookstore\[([^]]*)\]", requirement.replace(" ", ""))
        if self_extras is None:
            wanted.append(requirement)
            continue
        for extra in self_extras.group(1).split(","):
            if extra not in seen:
                seen.add(extra)
                add(extras[extra])


add(project["dependencies"])
add(["bookstore[dev]"])
with open(f"{sys.argv[1]}/build-requirements.txt", "w") as f:
    f.write("\n".join(pyproject["build-system"]["requires"]) + "\n")
with open(f"{sys.argv[1]}/dev-requirements.txt", "w") as f:
    f.write("\n".join(wanted) + "\n")
PY
# --no-compile: pip does not byte-compile the ~200 packages it installs (half of its time
# here); Python compiles and caches each module the first time it is imported, and the
# tests and the demo import a small part of them.
"$VENV/bin/python" -m pip install --quiet --no-compile -r "$WHEELS/build-requirements.txt"
# The frontend build (node, in the wheel build) and the install of the test and dev
# dependencies (downloading, unpacking) run side by side: less time on two CPUs.
# The build only uses what the line above installed, which the dependencies' install
# finds satisfied and leaves alone.
# The build hook runs the virtualenv's jlpm (from JupyterLab): on PATH for the build.
PATH="$(cd "$VENV" && pwd)/bin:$PATH" \
  "$VENV/bin/python" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$WHEELS" . &
build=$!
if ! "$VENV/bin/python" -m pip install --quiet --no-compile -r "$WHEELS/dev-requirements.txt"; then
  kill "$build" 2>/dev/null || true
  wait "$build" 2>/dev/null || true
  exit 1
fi
wait "$build"
WHEEL=$(echo "$WHEELS"/bookstore-*.whl)
"$VENV/bin/python" -m pip install --quiet --no-compile --upgrade --force-reinstall --no-deps "$WHEEL"
# Resolves bookstore[dev] once more: a no-op when the list above was complete.
"$VENV/bin/python" -m pip install --quiet --no-compile "$WHEEL[dev]"
echo "$HASH" > "$STAMP"
