"""Where metrics and events go: the SQLite store (source of truth) and its mirrors."""
