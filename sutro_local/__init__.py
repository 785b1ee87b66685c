"""sutro-local: the embedded Sutro-compatible server."""
