"""airflow_provider_sutro (work in progress)."""
