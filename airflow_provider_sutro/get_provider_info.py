"""Provider metadata that Airflow's providers manager reads via the ``apache_airflow_provider`` entry point.

This module must stay import-light: Airflow loads it while it is still initialising its own configuration,
so importing ``airflow`` (or anything that does) from here would be circular.

Example::

    from airflow_provider_sutro.get_provider_info import get_provider_info
    assert get_provider_info()["package-name"] == "sutro-pipelines"
"""

from __future__ import annotations

from typing import Any

_INTEGRATION = "Sutro"


def get_provider_info() -> dict[str, Any]:
    """Return the provider description: hooks, operators, sensors, triggers, links, the ``sutro`` connection.

    Example::

        info = get_provider_info()
        assert info["connection-types"][0]["connection-type"] == "sutro"
    """
    return {
        # Must equal the distribution name: Airflow refuses providers whose names disagree.
        "package-name": "sutro-pipelines",
        "name": "Sutro",
        "description": "Run Sutro batch-LLM inference jobs and Sutro Functions as deferrable Airflow tasks, "
        "with results written to parquet.",
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://docs.sutro.sh/",
                "tags": ["ai"],
            }
        ],
        **{
            kind: [{"integration-name": _INTEGRATION, "python-modules": [f"airflow_provider_sutro.{kind}.sutro"]}]
            for kind in ("hooks", "operators", "sensors", "triggers")
        },
        "extra-links": ["airflow_provider_sutro.links.SutroJobLink"],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_sutro.hooks.sutro.SutroHook",
                "hook-name": "Sutro",
                "connection-type": "sutro",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login", "extra"],
                    "relabeling": {"password": "API Key", "host": "API URL"},
                    "placeholders": {
                        "password": "your Sutro API key",
                        "host": "https://api.sutro.sh (leave empty for the hosted service)",
                    },
                },
            }
        ],
    }
