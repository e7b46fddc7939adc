"""bookstore's version, read by hatchling and reported by ``GET /api/bookstore``."""

__version__ = "0.1.0.dev0"
