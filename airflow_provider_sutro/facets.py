"""``SutroRunFacet``: the custom OpenLineage run facet (``sutro``) the Sutro operators attach to their events.

Imported only by the operators' ``get_openlineage_facets_on_*`` methods, which only the OpenLineage provider
calls: without ``apache-airflow-providers-openlineage`` (the ``openlineage`` extra) nothing imports this.

The facet holds the step's description (``sutro_core.lineage.StepLineage.attributes()``): ``gen_ai.*``
names where OpenTelemetry has one, ``sutro.*`` for the rest. Its JSON schema ships beside this module
(``SutroRunFacet.json``) and is what ``_schemaURL`` points at.

Example::

    SutroRunFacet(attributes={"gen_ai.request.model": "qwen-3-4b", "sutro.job.id": "job-1"})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attrs import define, field
from openlineage.client.generated.base import RunFacet

#: Where the facet's JSON schema is published (the same file as ``SCHEMA_FILE``, which ships in the package).
SCHEMA_URL = "https://sutro.sh/spec/openlineage/facets/1-0-0/SutroRunFacet.json#/$defs/SutroRunFacet"
#: The facet's JSON schema, in the installed package.
SCHEMA_FILE = Path(__file__).with_name("SutroRunFacet.json")


@define
class SutroRunFacet(RunFacet):
    """What the Sutro step did: job id and URL, model or Function, tokens, cost, reattached, input and
    output (the ``gen_ai.*`` / ``sutro.*`` attributes of ``StepLineage``).

    Example::

        SutroRunFacet(attributes=step.attributes())
    """

    attributes: dict[str, Any] = field(factory=dict)

    @staticmethod
    def _get_schema() -> str:
        return SCHEMA_URL
