"""bookstore's version, read by setuptools and reported by ``GET /api/bookstore``.

3.x: the name ``bookstore`` on PyPI belongs to the original project (2.5.1 is its last
release); a version above it means pip never prefers the old package over this one.
"""

__version__ = "3.0.0.dev0"
