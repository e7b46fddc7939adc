#!/usr/bin/env bash
# Set up and run the demo: a local SeaweedFS with a versioned bucket (data kept in
# .demo/ in this checkout) and Jupyter Notebook with bookstore. Click save, watch versions.
#
#   bash scripts/demo.sh            # Notebook 7 (default)
#   bash scripts/demo.sh nbclassic  # the classic notebook UI; also: lab, server
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
exec "${BOOKSTORE_VENV:-.venv}/bin/python" scripts/demo.py "$@"
