"""Example pipelines: the same support-ticket work as a Dagster asset graph, an Airflow DAG and a Prefect flow.

Run all three against a local server with ``./run demo`` (``python -m example_pipelines.demo``).

Example:
    >>> from example_pipelines.common import load_tickets
    >>> load_tickets("2026-01-05").height
    45
"""
