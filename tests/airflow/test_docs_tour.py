"""The README's Airflow tour runs as written (against sutro-local)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[2] / "docs" / "airflow.md"


def test_tour_dag_runs(run_dag: Any, sutro_conn: str, tmp_path: Path, monkeypatch: Any) -> None:
    code = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)[0]
    code = code.replace("/tmp/", f"{tmp_path}/")  # keep the test's files in its own folder
    namespace: dict[str, Any] = {"__name__": "tour"}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - running our own docs is the point
    result = run_dag(namespace["dag"])
    assert result.state == "success"
    assert result.xcoms("report")["return_value"] == 2
    assert result.xcoms("embed")["return_value"]["rows"] == 2
    assert result.xcoms("one")["return_value"]["response"]
