#!/usr/bin/env bash
# Shared set-up for scripts/test.sh and scripts/demo.sh: a virtualenv in .venv with
# bookstore and everything its tests and demo need. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}

# Building the frontend extension (done by `pip install .`) needs node.
bash scripts/install-node.sh

VENV=${BOOKSTORE_VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
echo "==> installing bookstore and its test/dev dependencies into $VENV"
# A regular (not editable) install, so the jupyter-config file that enables the server
# extension and the prebuilt frontend in share/jupyter/labextensions are installed exactly
# as users get them. The build hook compiles the frontend with node (jlpm) when src/ is
# newer than bookstore/labextension.
"$VENV/bin/python" -m pip install --quiet --upgrade --force-reinstall --no-deps .
"$VENV/bin/python" -m pip install --quiet ".[dev]"
