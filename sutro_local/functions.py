"""Sutro Functions on sutro-local: YAML definitions, per-key registry, dispatch by `type:`.

A Function is a named task with input fields and a prompt template. Its `type` picks the module
that validates and runs it; ``FUNCTION_TYPES`` maps a type to a module path exposing

- ``validate(defn: FunctionDef, engines: EngineRegistry) -> None`` (cheap; raise FunctionDefinitionError)
- ``create(defn: FunctionDef, engines: EngineRegistry) -> FunctionRunner``

so adding a type (e.g. ``extraction`` on a generative engine) is one line here plus one module.

Example YAML (classification)::

    name: ticket-triage
    type: classification
    inputs: [text]
    prompt_template: "Support ticket: {text}"
    labels:
      - {name: billing, description: "charges, invoices, refunds, payment methods"}
      - {name: bug, description: "something in the product is broken or crashes"}
    examples:
      - {input: {text: "I was charged twice this month"}, label: billing}

Example:
    >>> d = parse_definition({"name": "t", "type": "classification", "inputs": ["text"],
    ...                       "labels": [{"name": "a", "description": "x"}, {"name": "b", "description": "y"}]})
    >>> d.render({"text": "hi"})
    'hi'
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol

from .engines.base import ChunkParams, ChunkResult
from .engines.registry import EngineRegistry
from .store import GLOBAL_OWNER, Store

log = logging.getLogger(__name__)

FUNCTION_TYPES: dict[str, str] = {
    "classification": "sutro_local.classification",
    "extraction": "sutro_local.extraction",  # generative models (transformers/openai engines)
}

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# The keys a definition may hold; anything else is refused at publish (a typo, or a YAML flow
# mapping split by a comma, e.g. `{name: billing, description: charges, invoices}`).
COMMON_FIELDS = ("name", "type", "description", "inputs", "input_fields", "prompt_template", "model", "instructions")
TYPE_FIELDS: dict[str, tuple[str, ...]] = {
    "classification": ("labels", "examples", "temperature"),
    "extraction": ("output_schema", "rationale", "rationale_max_chars", "sampling_params"),
}
ITEM_FIELDS = {"labels": ("name", "description"), "examples": ("input", "text", "label")}


class FunctionDefinitionError(ValueError):
    """A Function definition is malformed; the message names the field and the fix."""


class FunctionInputError(ValueError):
    """An input object does not fit the Function (e.g. a missing field)."""


@dataclass(frozen=True)
class FunctionDef:
    """A validated Function definition. `raw` keeps every field for the type-specific module."""

    name: str
    type: str
    inputs: tuple[str, ...]
    prompt_template: str | None
    model: str | None
    description: str
    raw: dict[str, Any] = field(hash=False, compare=False)

    @property
    def fingerprint(self) -> str:
        """Stable digest of the definition (cache key for runners)."""
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True).encode()).hexdigest()[:16]

    def check_input(self, obj: Any, where: str = "input") -> dict[str, Any]:
        """Validate one input object: a mapping holding every input field (as text). A bare string
        is accepted when the Function has exactly one input (as the official SDK sends it)."""
        if isinstance(obj, str) and len(self.inputs) == 1:
            obj = {self.inputs[0]: obj}
        if not isinstance(obj, Mapping):
            raise FunctionInputError(
                f"{where} must be an object with the fields {list(self.inputs)} of Function "
                f"{self.name!r}, got {type(obj).__name__}"
            )
        missing = [f for f in self.inputs if f not in obj or obj[f] is None]
        if missing:
            raise FunctionInputError(
                f"{where} is missing field {missing[0]!r} required by Function {self.name!r} "
                f"(inputs: {list(self.inputs)})"
            )
        return {k: obj[k] for k in self.inputs}

    def render(self, obj: Mapping[str, Any]) -> str:
        """The text the Function works on: the prompt template filled with the input fields."""
        values = {k: "" if obj.get(k) is None else str(obj.get(k)) for k in self.inputs}
        if self.prompt_template:
            return self.prompt_template.format_map(values)
        if len(self.inputs) == 1:
            return values[self.inputs[0]]
        return "\n".join(f"{k}: {v}" for k, v in values.items())


class FunctionRunner(Protocol):
    """Runs one Function. `run`/`count_tokens` follow the engine contract (rows are JSON objects as
    text), so the worker runs batch Function jobs exactly like model jobs; `run_one` answers
    `functions/{name}/run` in the wire shape of the Function's type."""

    def run_one(self, obj: dict[str, Any], confidence_scoring: bool = True) -> dict[str, Any]:
        """One input -> the wire response."""
        ...

    def run(self, rows: list[str], params: ChunkParams) -> ChunkResult:
        """One chunk of JSON-object rows -> outputs (JSON text) and carried columns."""
        ...

    def count_tokens(self, rows: list[str]) -> list[int]:
        """Input token counts for dry runs."""
        ...


@dataclass
class FunctionChunkResult(ChunkResult):
    """A ChunkResult with extra per-row columns carried into the results file (e.g. confidence_score)."""

    carried: dict[str, list[Any]] = field(default_factory=dict)


def _type_module(type_name: str) -> Any:
    try:
        target = FUNCTION_TYPES[type_name]
    except KeyError:
        raise FunctionDefinitionError(
            f"Function field 'type' is {type_name!r}; this server supports {sorted(FUNCTION_TYPES)}"
        ) from None
    return importlib.import_module(target)


def parse_definition(raw: Any) -> FunctionDef:
    """Validate the common fields of a Function definition (type-specific checks come later)."""
    if not isinstance(raw, Mapping):
        raise FunctionDefinitionError("a Function definition must be a mapping with name, type, inputs, ...")
    raw = dict(raw)
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise FunctionDefinitionError(
            f"Function field 'name' is {name!r}; use 1-64 letters, digits, '-', '_' or '.'"
        )
    type_name = raw.get("type", "classification")
    if type_name not in FUNCTION_TYPES:
        _type_module(type_name)  # raises the clear error
    inputs = raw.get("inputs") or raw.get("input_fields")
    if isinstance(inputs, Mapping):
        inputs = list(inputs)
    if isinstance(inputs, list):
        inputs = [i.get("name") if isinstance(i, Mapping) else i for i in inputs]
    if not inputs or not all(isinstance(i, str) and i for i in inputs):
        raise FunctionDefinitionError(
            f"Function {name!r} field 'inputs' must list the input field names, e.g. inputs: [text]"
        )
    template = raw.get("prompt_template")
    if template is not None:
        if not isinstance(template, str):
            raise FunctionDefinitionError(f"Function {name!r} field 'prompt_template' must be a string")
        unknown = [f for f in re.findall(r"{([^{}]+)}", template) if f not in inputs]
        if unknown:
            raise FunctionDefinitionError(
                f"Function {name!r} prompt_template uses {{{unknown[0]}}} which is not an input field "
                f"(inputs: {inputs})"
            )
    model = raw.get("model")
    raw["type"] = type_name
    raw["inputs"] = list(inputs)
    return FunctionDef(
        name=name, type=type_name, inputs=tuple(inputs), prompt_template=template,
        model=str(model) if model else None, description=str(raw.get("description") or ""), raw=raw,
    )  # fmt: skip


def _check_text(raw: Any) -> None:
    from .errors import ApiError
    from .jsonsafe import check_json

    try:
        check_json(raw, root="definition")
    except ApiError as exc:  # published definitions are later served as JSON: refuse what cannot be
        raise FunctionDefinitionError(exc.detail) from None


def check_known_fields(defn: FunctionDef) -> None:
    """Refuse keys a definition of its type does not use, naming the key (and the YAML pitfall)."""
    allowed = COMMON_FIELDS + TYPE_FIELDS.get(defn.type, ())
    for key in defn.raw:
        if key not in allowed:
            raise FunctionDefinitionError(
                f"Function {defn.name!r} has unknown field {str(key)[:100]!r}; a {defn.type} Function takes "
                f"{', '.join(allowed)}"
            )
    for field_name, item_keys in ITEM_FIELDS.items():
        items = defn.raw.get(field_name)
        for i, item in enumerate(items if isinstance(items, list) else []):
            for key in item if isinstance(item, Mapping) else ():
                if key not in item_keys:
                    hint = (" (a comma inside a YAML {...} mapping splits the value: quote the text)"
                            if item[key] is None else "")  # fmt: skip
                    raise FunctionDefinitionError(
                        f"Function {defn.name!r} {field_name}[{i}] has unknown key {str(key)[:100]!r}{hint}; "
                        f"allowed: {', '.join(item_keys)}"
                    )


class FunctionService:
    """Publishes, resolves and runs Functions for API keys (config-folder Functions are global)."""

    def __init__(self, store: Store, engines: EngineRegistry) -> None:
        self._store = store
        self._engines = engines
        self._runners: dict[str, FunctionRunner] = {}
        self._lock = threading.Lock()

    def validate(self, raw: Any) -> FunctionDef:
        """Full validation: valid text, known keys, common fields, then the type module's checks."""
        _check_text(raw)
        defn = parse_definition(raw)
        check_known_fields(defn)
        _type_module(defn.type).validate(defn, self._engines)
        return defn

    def publish(self, owner: str, raw: Any) -> tuple[FunctionDef, int]:
        """Validate and store a Function in a key's namespace; returns (definition, revision)."""
        defn = self.validate(raw)
        rev = self._store.put_function(owner, defn.name, defn.type, defn.raw)
        return defn, rev

    def load_dir(self, folder: Path) -> list[str]:
        """Publish every *.yaml / *.yml Function in a folder as global (visible to every key)."""
        import yaml

        names = []
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            try:
                defn, _ = self.publish(GLOBAL_OWNER, yaml.safe_load(path.read_text()))
            except (FunctionDefinitionError, yaml.YAMLError) as exc:
                raise FunctionDefinitionError(f"{path}: {exc}") from exc
            names.append(defn.name)
        return names

    def resolve(self, owner: str, name: str) -> FunctionDef | None:
        """The Function a key sees under a name (its own first, then global), or None."""
        found = self._store.get_function(owner, name)
        return parse_definition(found[0]) if found else None

    def list(self, owner: str) -> list[dict[str, Any]]:
        """Definitions visible to a key."""
        return self._store.list_functions(owner)

    def runner(self, defn: FunctionDef) -> FunctionRunner:
        """A cached runner for a definition (created on first use; may load a model)."""
        key = f"{defn.name}:{defn.fingerprint}"
        runner = self._runners.get(key)
        if runner is None:
            with self._lock:
                runner = self._runners.get(key)
                if runner is None:
                    runner = _type_module(defn.type).create(defn, self._engines)
                    self._runners[key] = runner
        return runner
