"""``BatchJobRequest``: one validated batch job, ready to submit, with a stable fingerprint.

Example:
    >>> req = BatchJobRequest.for_inference(["I love it", "Broken on arrival"], model="all-minilm-l6-v2")
    >>> req.num_rows, len(req.fingerprint)
    (2, 32)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .errors import InputValidationError
from .idempotency import MAX_DESCRIPTION_LENGTH, marker, scope_marker, with_marker
from .inputs import NormalisedInputs, normalise_object_rows, normalise_text_rows

MAX_NAME_LENGTH = 45
# Room kept for the idempotency key's and the step scope's markers in the description.
_MARKER_LENGTH = len(marker("0" * 32)) + 1 + len(scope_marker("0" * 16)) + 1


def schema_to_dict(output_schema: Any) -> dict[str, Any] | None:
    """A JSON schema dict from a dict or a pydantic model class."""
    if output_schema is None:
        return None
    if isinstance(output_schema, type) and hasattr(output_schema, "model_json_schema"):
        return output_schema.model_json_schema()
    if isinstance(output_schema, dict):
        if not output_schema:
            raise InputValidationError("output_schema", "the schema is empty; give a JSON schema object")
        try:
            json.dumps(output_schema)
        except (TypeError, ValueError) as exc:
            raise InputValidationError("output_schema", f"the schema is not JSON-serialisable: {exc}") from exc
        return output_schema
    raise InputValidationError(
        "output_schema",
        f"expected a JSON schema dict or a pydantic model class, got {type(output_schema).__name__}",
    )


def _check_text(field_name: str, value: str | None, limit: int) -> None:
    if value is not None and not isinstance(value, str):
        raise InputValidationError(field_name, f"must be a string, got {type(value).__name__}")
    if value is not None and len(value) > limit:
        raise InputValidationError(field_name, f"is {len(value)} characters; the limit is {limit}: shorten it")


@dataclass(frozen=True)
class BatchJobRequest:
    """A validated batch job: inputs, model (or Function name) and settings.

    Build with ``for_inference`` or ``for_function``; submit with ``client.submit_job``.
    """

    model: str
    inputs: NormalisedInputs
    job_priority: int = 0
    system_prompt: str | None = None
    json_schema: dict[str, Any] | None = None
    sampling_params: dict[str, Any] | None = None
    random_seed_per_input: bool = False
    truncate_rows: bool = True
    name: str | None = None
    description: str | None = None
    dry_run: bool = False
    is_function: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise InputValidationError("model", "give a model name (e.g. 'qwen-3-4b') or a Function name")
        if isinstance(self.job_priority, bool) or not isinstance(self.job_priority, int) or self.job_priority < 0:
            raise InputValidationError("job_priority", f"must be 0 (interactive) or 1 (batch), got {self.job_priority!r}")
        _check_text("name", self.name, MAX_NAME_LENGTH)
        _check_text("description", self.description, MAX_DESCRIPTION_LENGTH)
        _check_text("system_prompt", self.system_prompt, 1_000_000)
        if self.sampling_params is not None and not isinstance(self.sampling_params, dict):
            raise InputValidationError("sampling_params", "must be a dict such as {'temperature': 0.2}")

    @classmethod
    def for_inference(
        cls,
        data: Any,
        model: str,
        *,
        column: str | Sequence[str] | None = None,
        id_column: str | None = None,
        job_priority: int = 0,
        output_schema: Any = None,
        system_prompt: str | None = None,
        sampling_params: dict[str, Any] | None = None,
        random_seed_per_input: bool = False,
        truncate_rows: bool = True,
        name: str | None = None,
        description: str | None = None,
        dry_run: bool = False,
    ) -> "BatchJobRequest":
        """A batch inference job over text rows (see ``normalise_text_rows`` for accepted data)."""
        return cls(
            model=model,
            inputs=normalise_text_rows(data, column, id_column),
            job_priority=job_priority,
            system_prompt=system_prompt,
            json_schema=schema_to_dict(output_schema),
            sampling_params=sampling_params,
            random_seed_per_input=random_seed_per_input,
            truncate_rows=truncate_rows,
            name=name,
            description=description,
            dry_run=dry_run,
        )

    @classmethod
    def for_function(
        cls,
        function_name: str,
        data: Any,
        *,
        columns: Sequence[str] | None = None,
        job_priority: int = 0,
        name: str | None = None,
        description: str | None = None,
        dry_run: bool = False,
    ) -> "BatchJobRequest":
        """A batch Function job: each row is an object whose keys are the Function's inputs."""
        return cls(
            model=function_name,
            inputs=normalise_object_rows(data, columns),
            job_priority=job_priority,
            name=name,
            description=description,
            dry_run=dry_run,
            is_function=True,
        )

    @property
    def num_rows(self) -> int | None:
        """Rows in the job (None for URL inputs, counted by the server)."""
        return self.inputs.num_rows

    @cached_property
    def fingerprint(self) -> str:
        """Digest of what the job computes: inputs, model, prompt, schema, sampling, priority.

        Name and description are cosmetic and left out, so renaming a step still reattaches.
        """
        h = hashlib.blake2b(digest_size=16)
        settings = [
            self.model, self.job_priority, self.system_prompt, self.json_schema, self.sampling_params,
            self.random_seed_per_input, self.truncate_rows, self.dry_run, self.is_function,
            self.inputs.url, self.inputs.column_name, self.inputs.id_column_name,
        ]
        h.update(json.dumps(settings, sort_keys=True, default=str).encode())
        for row in self.inputs.inline or ():
            data = (row if isinstance(row, str) else json.dumps(row, sort_keys=True, default=str)).encode()
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)
        return h.hexdigest()

    def payload(self, idempotency_key: str | None = None, scope: str | None = None) -> dict[str, Any]:
        """The ``batch-inference`` request body, with the idempotency marker in the description."""
        description = self.description
        if idempotency_key is not None:
            if description and len(description) + _MARKER_LENGTH > MAX_DESCRIPTION_LENGTH:
                raise InputValidationError(
                    "description",
                    f"with the idempotency marker it would exceed {MAX_DESCRIPTION_LENGTH} characters; "
                    f"keep it under {MAX_DESCRIPTION_LENGTH - _MARKER_LENGTH}",
                )
            description = with_marker(description, idempotency_key, scope)
        body: dict[str, Any] = {
            "model": self.model,
            "inputs": self.inputs.inline if self.inputs.url is None else self.inputs.url,
            "job_priority": self.job_priority,
            "json_schema": self.json_schema,
            "system_prompt": self.system_prompt,
            "cost_estimate": self.dry_run,
            "sampling_params": self.sampling_params,
            "random_seed_per_input": self.random_seed_per_input,
            "truncate_rows": self.truncate_rows,
            "name": self.name,
            "description": description,
        }
        if self.inputs.url is not None:
            body["column_name"] = self.inputs.column_name
            if self.inputs.id_column_name:
                body["id_column_name"] = self.inputs.id_column_name
        body.update(self.extra)
        return body

    def as_dry_run(self) -> "BatchJobRequest":
        """The same job as a cost-estimate dry run."""
        from dataclasses import replace

        return replace(self, dry_run=True)
