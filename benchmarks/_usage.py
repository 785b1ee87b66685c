"""CPU and poll accounting for the waiting benchmark, shared by both contenders.

Standard library only: ``_sdk_contender.py`` runs in the official SDK's own venv and imports this
from the same folder.

Example:
    >>> marks = {"start": (0.0, ru0, 0), "end": (60.0, ru1, 120)}   # (perf_counter, rusage, polls)
    >>> usage_report(marks)["polls"]
    120
"""

from __future__ import annotations


def usage_report(marks: dict) -> dict:
    """CPU (user, sys) and polls over the whole window and over its steady part."""
    def span(a: str, b: str) -> dict:
        (t0, r0, p0), (t1, r1, p1) = marks[a], marks[b]
        user, system = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
        return {"s": t1 - t0, "cpu_s": user + system, "user_s": user, "sys_s": system, "polls": p1 - p0}

    whole = span("start", "end")
    steady = span("steady", "end") if "steady" in marks else None
    return {"cpu_s": whole["cpu_s"], "user_s": whole["user_s"], "sys_s": whole["sys_s"], "polls": whole["polls"],
            "steady": steady}
