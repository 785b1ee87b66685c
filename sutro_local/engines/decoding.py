"""Per-step bookkeeping hooks for ``model.generate()``: token log-probabilities and stop handling.

``LogprobRecorder`` is a logits processor that keeps, per row, the log-probability of each chosen
token under the model (streamed, so memory is one step of logits, not the whole generation).
``FinishTracker`` is a stopping criterion that ends a row at an end-of-sequence token or a stop
string and remembers how many tokens each row really produced (later positions are padding).

Example:
    >>> rec, fin = LogprobRecorder(), FinishTracker(prompt_len=7, batch_size=2, eos_ids={2})
    >>> out = model.generate(**enc, logits_processor=[rec], stopping_criteria=[fin])   # doctest: +SKIP
    >>> rec.per_token(out.sequences, fin.lengths(out.sequences.shape[1] - 7))              # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class LogprobRecorder:
    """Logits processor that records the chosen token's log-probability at every step.

    It must come first among the custom processors: it then sees the model's logits before any
    grammar mask and before temperature/top-k/top-p (transformers applies those warpers last).
    It never changes the scores.
    """

    def __init__(self) -> None:
        self._pending: Any = None  # log-softmax of the previous step, [batch, vocab]
        self._steps: list[Any] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if self._pending is not None:
            self._take(input_ids[:, -1])
        self._pending = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def _take(self, tokens: Any) -> None:
        tokens = tokens.to(self._pending.device).view(-1, 1)  # final sequences may be on the CPU
        self._steps.append(self._pending.gather(1, tokens).squeeze(1))
        self._pending = None

    def per_token(self, sequences: Any, lengths: list[int]) -> list[list[float]]:
        """Per row, the log-probabilities of its first ``lengths[row]`` generated tokens."""
        import torch

        if self._pending is not None:  # the last step's token is only in the final sequences
            self._take(sequences[:, -1])
        if not self._steps:
            return [[] for _ in lengths]
        per_step = torch.stack(self._steps, dim=1).cpu()  # [batch, steps]
        return [per_step[i, :n].tolist() for i, n in enumerate(lengths)]


class FinishTracker:
    """Stopping criterion: a row ends at an EOS token or when its text contains a stop string.

    ``decode`` turns token ids into text (only needed with stop strings).
    """

    def __init__(
        self,
        prompt_len: int,
        batch_size: int,
        eos_ids: set[int],
        stop: tuple[str, ...] = (),
        decode: Callable[[list[int]], str] | None = None,
    ) -> None:
        self.prompt_len = prompt_len
        self.eos_ids = eos_ids
        self.stop = stop
        self._decode = decode
        # A stop string spans at most len(stop) tokens (+ slack for multi-byte pieces).
        self._tail = max((len(s) for s in stop), default=0) + 4
        self.finished_at: list[int | None] = [None] * batch_size
        self.reason: list[str] = ["length"] * batch_size

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        gen_len = input_ids.shape[1] - self.prompt_len
        done = []
        for i in range(input_ids.shape[0]):
            if self.finished_at[i] is None:
                last = int(input_ids[i, -1])
                if last in self.eos_ids:
                    self.finished_at[i], self.reason[i] = gen_len, "stop"
                elif self.stop and self._decode is not None:
                    tail = self._decode(input_ids[i, -min(gen_len, self._tail) :].tolist())
                    if any(s in tail for s in self.stop):
                        self.finished_at[i], self.reason[i] = gen_len, "stop"
            done.append(self.finished_at[i] is not None)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def lengths(self, generated: int) -> list[int]:
        """Tokens each row really produced (rows that never finished used all ``generated``)."""
        return [generated if f is None else f for f in self.finished_at]


class SeededSampler:
    """Logits processor that samples each row with its own seeded generator.

    transformers samples from torch's process-global RNG, so one seed per row would force one
    ``generate()`` call per row. Instead generation runs greedy and this processor (last in the
    list) applies temperature, top-k, top-p and min-p, draws each row's token with that row's
    ``torch.Generator``, and leaves only the drawn token selectable. A row's draws depend only on
    its seed and its logits, so batching does not change them.

    Example:
        >>> sampler = SeededSampler([11, 12], temperature=0.8, top_p=0.9, device="cpu")   # doctest: +SKIP
    """

    def __init__(
        self,
        seeds: list[int],
        *,
        temperature: float,
        top_p: float | None = None,
        top_k: int | None = None,
        min_p: float | None = None,
        device: Any = "cpu",
    ) -> None:
        import torch

        self._gens = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.min_p = min_p

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        logits = scores.float() / self.temperature
        neg_inf = float("-inf")
        if self.top_k:
            k = min(self.top_k, logits.shape[-1])
            kth = torch.topk(logits, k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, neg_inf)
        probs = torch.softmax(logits, dim=-1)
        if self.min_p:
            floor = probs.max(dim=-1, keepdim=True).values * self.min_p
            probs = probs.masked_fill(probs < floor, 0.0)
        if self.top_p is not None and self.top_p < 1.0:
            sorted_p, order = torch.sort(probs, dim=-1, descending=True)
            before = torch.cumsum(sorted_p, dim=-1) - sorted_p  # mass of the tokens ranked above
            sorted_p = sorted_p.masked_fill(before > self.top_p, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        chosen = torch.empty(probs.shape[0], dtype=torch.long, device=probs.device)
        for i, gen in enumerate(self._gens):
            row = probs[i]
            if not torch.isfinite(row).all() or row.sum() <= 0:  # nothing left (cannot happen in practice)
                chosen[i] = int(torch.argmax(scores[i]))
            else:
                chosen[i] = torch.multinomial(row, 1, generator=gen)[0]
        out = torch.full_like(scores, neg_inf)
        out.scatter_(1, chosen.view(-1, 1), 0.0)
        return out
