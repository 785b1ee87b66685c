"""Airflow provider for Sutro: a hook, deferrable operators, a sensor and a trigger over ``sutro_core``.

Kept free of imports on purpose: Airflow imports this package (through ``get_provider_info``) while it is
still starting up, so pulling in operators here would import Airflow inside Airflow's own import.

Example::

    from airflow_provider_sutro.operators.sutro import SutroBatchInferenceOperator
"""

__version__ = "0.1.0"
