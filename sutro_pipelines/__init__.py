"""The distribution's own import name, so Airflow finds it.

Airflow (3.3, ``dag_processing/bundles/manager.py``) imports every provider's distribution name with dashes
turned into underscores to look for an ``example_dags`` folder, whenever ``[core] load_examples`` is on
(its default). For the ``sutro-pipelines`` distribution that is ``sutro_pipelines``; without this package
every ``airflow dags test`` printed "Could not load provider module sutro_pipelines" with a
``ModuleNotFoundError`` traceback, twice. It holds no example DAGs on purpose (the example lives in
``example_pipelines/airflow_dag.py``) and nothing else.

Example::

    import sutro_pipelines
    sutro_pipelines.__version__      # '0.1.0'
"""

from airflow_provider_sutro import __version__

__all__ = ["__version__"]
