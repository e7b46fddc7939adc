"""``python -m bookstore.cli``: the ``bookstore`` command."""

import sys

from .app import main

sys.exit(main())
