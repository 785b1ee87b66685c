"""Extraction Functions: pull a JSON object out of text with a generative model.

The model (a ``transformers`` or ``openai`` model of the server) answers under constrained
decoding with the Function's ``output_schema``; by default it also writes a short rationale
after the object (one JSON answer ``{"output": {...}, "rationale": "..."}``, the rationale capped
at ``rationale_max_chars``), so the object is complete before the explanation starts. For a
reasoning model the rationale is its ``reasoning_content`` instead. ``confidence`` is the
geometric-mean probability of the generated tokens, ``exp(cumulative_logprob / tokens)``: how sure
the model was of the answer it wrote (1.0 = every token certain).

Definition fields: ``model`` (required), ``inputs``, ``prompt_template``, ``output_schema``
(required, a JSON schema), optional ``instructions`` (the system prompt; default: the description),
``rationale`` (default true), ``rationale_max_chars`` (default 200), ``sampling_params``
(default greedy, ``max_tokens`` 512).

Example YAML::

    name: invoice-fields
    type: extraction
    model: qwen-2.5-7b
    inputs: [text]
    prompt_template: "Invoice text: {text}"
    instructions: Extract the vendor and the total amount.
    output_schema:
      type: object
      properties: {vendor: {type: string}, total: {type: number}}
      required: [vendor, total]

A batch job's rows are the extracted objects as JSON (``null`` when the model ran out of
``max_tokens`` before closing the object), with a ``confidence_score`` column.

Example:
    >>> # create(defn, engines).run_one({"text": "ACME Ltd, total due 12.50"})
    >>> # {"output": {"vendor": "ACME Ltd", "total": 12.5}, "rationale": "...", "confidence": 0.93,
    >>> #  "usage": {...}}
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from typing import Any

from .engines.base import ChunkParams, EngineInputError
from .engines.registry import EngineRegistry, UnknownModelError
from .functions import FunctionChunkResult, FunctionDef, FunctionDefinitionError, FunctionInputError

log = logging.getLogger(__name__)

GENERATIVE_ENGINES = ("transformers", "llamacpp", "openai")


def validate(defn: FunctionDef, engines: EngineRegistry) -> None:
    """Check model, output_schema and options (cheap: loads nothing)."""
    where = f"extraction Function {defn.name!r}"
    if not defn.model:
        raise FunctionDefinitionError(f"{where} needs 'model': a transformers or openai model of the server")
    try:
        cfg = engines.model_config(defn.model)
    except UnknownModelError as exc:
        raise FunctionDefinitionError(f"{where} field 'model': {exc}") from None
    if cfg.engine not in GENERATIVE_ENGINES:
        raise FunctionDefinitionError(
            f"{where} field 'model' must name a generative model ({'/'.join(GENERATIVE_ENGINES)} engine); "
            f"{cfg.name!r} runs on the {cfg.engine!r} engine"
        )
    schema = defn.raw.get("output_schema")
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise FunctionDefinitionError(
            f"{where} needs 'output_schema': a JSON schema object, e.g. "
            "{type: object, properties: {vendor: {type: string}}, required: [vendor]}"
        )
    limit = defn.raw.get("rationale_max_chars", 200)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise FunctionDefinitionError(f"{where} field 'rationale_max_chars' must be a positive integer")
    sp = defn.raw.get("sampling_params", {})
    if not isinstance(sp, dict):
        raise FunctionDefinitionError(
            f"{where} field 'sampling_params' must be a mapping, e.g. {{max_tokens: 256}}"
        )
    from .errors import ApiError
    from .sampling_check import check_sampling, max_tokens_limit

    try:  # the bounds a job's sampling_params get at submit (NaN, 1e30, past the context window)
        check_sampling(sp, max_tokens_limit=max_tokens_limit(cfg), model=cfg.name)
    except ApiError as exc:
        raise FunctionDefinitionError(f"{where}: {exc.detail}") from None


class ExtractionRunner:
    """Runs one extraction Function on its generative engine (thread-safe: the engine is)."""

    def __init__(self, defn: FunctionDef, engines: EngineRegistry) -> None:
        self.defn = defn
        self._engine = engines.get(str(defn.model))
        self.output_schema: dict[str, Any] = defn.raw["output_schema"]
        self.with_rationale = bool(defn.raw.get("rationale", True)) and not getattr(
            self._engine, "reasoning", False
        )
        limit = int(defn.raw.get("rationale_max_chars", 200))
        self.schema = self.output_schema
        if self.with_rationale:
            self.schema = {
                "type": "object",
                "properties": {
                    "output": self.output_schema,
                    "rationale": {"type": "string", "maxLength": limit},
                },
                "required": ["output", "rationale"],
                "additionalProperties": False,
            }
        instructions = str(
            defn.raw.get("instructions") or defn.description or "Extract the requested fields."
        )
        self.system_prompt = (
            f"{instructions}\nAnswer with one JSON object matching this schema: "
            f"{json.dumps(self.schema, separators=(',', ':'))}"
        )
        self.sampling_params = {"max_tokens": 512, **dict(defn.raw.get("sampling_params") or {})}

    def _params(self, base: ChunkParams | None = None) -> ChunkParams:
        base = base or ChunkParams()
        return replace(
            base,
            system_prompt=self.system_prompt,
            json_schema=self.schema,
            sampling_params=dict(self.sampling_params),
            want_logprobs=True,
        )

    def _unpack(self, text: str, logprob: float | None, tokens: int) -> tuple[Any, str, float]:
        """(extracted object or None, rationale, confidence) from one generated answer."""
        confidence = math.exp(logprob / tokens) if (logprob is not None and tokens) else 0.0
        try:
            answer = json.loads(text)
        except json.JSONDecodeError:
            return (
                None,
                (
                    f"the model did not complete a JSON answer within max_tokens="
                    f"{self.sampling_params['max_tokens']}; raise sampling_params.max_tokens"
                ),
                0.0,
            )
        rationale = ""
        if isinstance(answer, dict) and set(answer) == {"content", "reasoning_content"}:
            rationale = str(answer["reasoning_content"] or "")  # reasoning model: its thinking explains
            answer = answer["content"]
            if isinstance(answer, str):
                try:
                    answer = json.loads(answer)
                except json.JSONDecodeError:
                    return None, "the model did not complete a JSON answer after its reasoning", 0.0
        if self.with_rationale and isinstance(answer, dict) and "output" in answer:
            rationale, answer = str(answer.get("rationale") or ""), answer["output"]
        return answer, rationale, round(confidence, 6)

    def count_tokens(self, rows: list[str]) -> list[int]:
        """Prompt tokens of the rendered inputs (rows are JSON objects as text)."""
        return self._engine.count_tokens([self.defn.render(json.loads(r)) for r in rows])

    def run_one(self, obj: dict[str, Any], confidence_scoring: bool = True) -> dict[str, Any]:
        """One input -> {"output", "rationale", "confidence", "usage"}."""
        obj = self.defn.check_input(obj)
        try:
            res = self._engine.run([self.defn.render(obj)], self._params(ChunkParams(truncate_rows=True)))
        except EngineInputError as exc:
            raise FunctionInputError(str(exc)) from None
        lp = res.cumulative_logprobs[0] if res.cumulative_logprobs else None
        output, rationale, confidence = self._unpack(res.outputs[0], lp, res.output_tokens[0])
        return {
            "output": output,
            "rationale": rationale,
            "confidence": confidence if confidence_scoring else None,
            "usage": {
                "input_tokens": res.input_tokens[0],
                "output_tokens": res.output_tokens[0],
                "system_prompt": self.system_prompt,  # the text, as the docs' usage shows
            },
        }

    def run(self, rows: list[str], params: ChunkParams) -> FunctionChunkResult:
        """A chunk of a batch Function job: the extracted object as JSON per row + confidence_score (and the
        engine's finish_reason where it has one)."""
        objs = []
        for i, r in enumerate(rows):
            try:
                objs.append(self.defn.check_input(json.loads(r), where=f"row {params.row_offset + i}"))
            except FunctionInputError as exc:
                raise EngineInputError(str(exc)) from None
        res = self._engine.run([self.defn.render(o) for o in objs], self._params(params))
        outputs, conf = [], []
        for i, text in enumerate(res.outputs):
            lp = res.cumulative_logprobs[i] if res.cumulative_logprobs else None
            output, rationale, confidence = self._unpack(text, lp, res.output_tokens[i])
            if output is None:
                log.warning("Function %s row %d: %s", self.defn.name, params.row_offset + i, rationale)
            outputs.append(json.dumps(output, ensure_ascii=False))
            conf.append(confidence)
        carried = {"confidence_score": conf}
        if "finish_reason" in res.carried:  # "length" says why a row's object is missing: max_tokens cut it
            carried["finish_reason"] = res.carried["finish_reason"]
        return FunctionChunkResult(
            outputs=outputs, input_tokens=res.input_tokens, output_tokens=res.output_tokens, carried=carried
        )


def create(defn: FunctionDef, engines: EngineRegistry) -> ExtractionRunner:
    """Runner factory used by the Function registry."""
    return ExtractionRunner(defn, engines)
