"""dagster_sutro (work in progress)."""
