"""Classification Functions scored by embedding similarity (no generative model needed).

Each label is embedded as "label: description"; labelled examples are embedded through the
Function's prompt template. An input's score for a label is its best cosine similarity to the
label's description or to any of the label's examples; a softmax over the scores (temperature
`temperature`, default 0.05) gives the confidences. The rationale names the nearest label
description and the nearest example.

Definition fields used here: `labels` (list of {name, description}, at least two), optional
`examples` (list of {input: {...} | text, label}), optional `model` (an embedding model of the
server; default all-minilm-l6-v2), optional `temperature`.

Example:
    >>> # runner = create(defn, engines); runner.run_one({"text": "I was charged twice"})["response"]
    >>> # 'billing'
"""

from __future__ import annotations

import json
from typing import Any

from .config import DEFAULT_EMBEDDING_MODEL
from .engines.base import ChunkParams, EngineInputError
from .engines.registry import EngineRegistry, UnknownModelError
from .functions import FunctionChunkResult, FunctionDef, FunctionDefinitionError, FunctionInputError


def _model(defn: FunctionDef) -> str:
    return defn.model or DEFAULT_EMBEDDING_MODEL


def validate(defn: FunctionDef, engines: EngineRegistry) -> None:
    """Check labels, examples and the model (cheap: loads nothing)."""
    labels = defn.raw.get("labels")
    if not isinstance(labels, list) or len(labels) < 2:
        raise FunctionDefinitionError(
            f"classification Function {defn.name!r} needs 'labels': a list of at least two "
            "{name, description} entries"
        )
    names = []
    for i, lab in enumerate(labels):
        if isinstance(lab, str):
            lab = {"name": lab}
        if not isinstance(lab, dict) or not isinstance(lab.get("name"), str) or not lab["name"]:
            raise FunctionDefinitionError(f"Function {defn.name!r} labels[{i}] needs a 'name' string")
        names.append(lab["name"])
    if len(set(names)) != len(names):
        raise FunctionDefinitionError(f"Function {defn.name!r} has duplicate label names: {names}")
    for i, ex in enumerate(defn.raw.get("examples") or []):
        if not isinstance(ex, dict) or ex.get("label") not in names:
            raise FunctionDefinitionError(
                f"Function {defn.name!r} examples[{i}] needs 'label' set to one of {names}"
            )
        if "input" not in ex and "text" not in ex:
            raise FunctionDefinitionError(f"Function {defn.name!r} examples[{i}] needs 'input' (or 'text')")
    try:
        cfg = engines.model_config(_model(defn))
    except UnknownModelError as exc:
        raise FunctionDefinitionError(f"Function {defn.name!r} field 'model': {exc}") from None
    if cfg.engine != "embedding":
        raise FunctionDefinitionError(
            f"classification Function {defn.name!r} field 'model' must name an embedding model; "
            f"{cfg.name!r} runs on the {cfg.engine!r} engine"
        )


class ClassificationRunner:
    """Scores inputs of one classification Function (thread-safe: read-only after init)."""

    def __init__(self, defn: FunctionDef, engines: EngineRegistry) -> None:
        import numpy as np

        self.defn = defn
        self._engine = engines.get(_model(defn))
        self._np = np
        labels = [lab if isinstance(lab, dict) else {"name": lab} for lab in defn.raw["labels"]]
        self.labels = [lab["name"] for lab in labels]
        self.descriptions = [str(lab.get("description") or lab["name"]) for lab in labels]
        self.temperature = float(defn.raw.get("temperature", 0.05))
        self._label_vecs = self._engine.encode([f"{n}: {d}" for n, d in zip(self.labels, self.descriptions)])
        examples = defn.raw.get("examples") or []
        self.example_texts = [self._example_text(ex) for ex in examples]
        self.example_labels = [self.labels.index(ex["label"]) for ex in examples]
        self._example_vecs = self._engine.encode(self.example_texts) if examples else None
        # usage.system_prompt is the prompt's *text* (the docs: "Return one lead qualification label.");
        # an embedding classifier has no chat prompt, so this is the instruction it stands for.
        self.system_prompt = str(
            defn.raw.get("instructions") or defn.description
            or f"Return one label: {', '.join(self.labels)}."
        )

    def _example_text(self, ex: dict[str, Any]) -> str:
        value = ex.get("input", ex.get("text"))
        if not isinstance(value, dict):
            value = {self.defn.inputs[0]: value}
        return self.defn.render(value)

    def _score(self, texts: list[str]) -> tuple[Any, Any, Any]:
        """(probabilities [n, k], description similarities [n, k], best example index/sim per row)."""
        np = self._np
        q = self._engine.encode(texts)
        desc_sim = q @ self._label_vecs.T
        scores = desc_sim.copy()
        ex_best = [None] * len(texts)
        if self._example_vecs is not None:
            ex_sim = q @ self._example_vecs.T
            for j, li in enumerate(self.example_labels):
                scores[:, li] = np.maximum(scores[:, li], ex_sim[:, j])
            ex_best = [(int(a), float(ex_sim[i, a])) for i, a in enumerate(ex_sim.argmax(axis=1))]
        z = scores / self.temperature
        z = z - z.max(axis=1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        return probs, desc_sim, ex_best

    def _rationale(self, top: int, desc_sim: Any, ex_best: tuple[int, float] | None) -> str:
        nearest = int(desc_sim.argmax())
        text = (
            f"Predicted {self.labels[top]!r}. Nearest label description: {self.labels[nearest]!r} "
            f"(\"{self.descriptions[nearest]}\", similarity {float(desc_sim[nearest]):.2f})"
        )
        if ex_best is not None:
            j, sim = ex_best
            snippet = self.example_texts[j] if len(self.example_texts[j]) <= 80 else self.example_texts[j][:77] + "..."
            text += f"; nearest example: \"{snippet}\" (label {self.labels[self.example_labels[j]]!r}, similarity {sim:.2f})"
        return text + "."

    def count_tokens(self, rows: list[str]) -> list[int]:
        """Token counts of the rendered inputs (rows are JSON objects as text)."""
        return self._engine.count_tokens([self.defn.render(json.loads(r)) for r in rows])

    def run_one(self, obj: dict[str, Any], confidence_scoring: bool = True) -> dict[str, Any]:
        """One input -> {response, confidence, predictions, rationale, usage}."""
        obj = self.defn.check_input(obj)
        text = self.defn.render(obj)
        probs, desc_sim, ex_best = self._score([text])
        p = probs[0]
        order = [int(i) for i in p.argsort()[::-1]]
        top = order[0]
        preds = [{"label": self.labels[i], "confidence": round(float(p[i]), 6) if confidence_scoring else None}
                 for i in order]  # fmt: skip
        return {
            "response": self.labels[top],
            "confidence": round(float(p[top]), 6) if confidence_scoring else None,
            "predictions": preds,
            "rationale": self._rationale(top, desc_sim[0], ex_best[0]),
            "usage": {
                "input_tokens": self._engine.count_tokens([text])[0],
                "output_tokens": 1,
                "system_prompt": self.system_prompt,
            },
        }

    def run(self, rows: list[str], params: ChunkParams) -> FunctionChunkResult:
        """A chunk of a batch Function job: JSON {"label","rationale"} per row + confidence_score."""
        objs = []
        for i, r in enumerate(rows):
            try:
                objs.append(self.defn.check_input(json.loads(r), where=f"row {params.row_offset + i}"))
            except FunctionInputError as exc:
                raise EngineInputError(str(exc)) from None
        texts = [self.defn.render(o) for o in objs]
        probs, desc_sim, ex_best = self._score(texts)
        outputs, conf = [], []
        for i in range(len(texts)):
            top = int(probs[i].argmax())
            outputs.append(json.dumps({"label": self.labels[top], "rationale": self._rationale(top, desc_sim[i], ex_best[i])}))
            conf.append(float(probs[i, top]))
        return FunctionChunkResult(
            outputs=outputs,
            input_tokens=self._engine.count_tokens(texts),
            output_tokens=[1] * len(texts),
            carried={"confidence_score": conf},
        )


def create(defn: FunctionDef, engines: EngineRegistry) -> ClassificationRunner:
    """Runner factory used by the Function registry."""
    return ClassificationRunner(defn, engines)
