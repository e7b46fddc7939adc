"""bookstore's HTTP handlers, one module per feature."""
