"""prefect_sutro (work in progress)."""
