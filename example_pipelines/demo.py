"""``./run demo``: start sutro-local, run the Airflow, Dagster and Prefect example pipelines for two days, print a summary.

Steps: start ``sutro-local`` in the background on a free port (data under ``.demo/sutro-local``), point
``SUTRO_API_URL`` / ``SUTRO_API_KEY`` at it, run each pipeline in its own runtime in a child process
(Airflow ``dag.test()`` in a fresh ``AIRFLOW_HOME``, Dagster ``materialize``, the Prefect flow in-process
on an ephemeral API) for the first day and then the next, check every parquet file it reports against its
Sutro jobs, print the steps and the rows each day billed and reused, stop the server. Exits 1 when any
pipeline or check fails.

Each pipeline keeps a row store under the output folder (``<output>/<pipeline>/row-store``, new every
demo run): the second day's open tickets are partly the first day's, and their results come from the
store instead of being paid for again.

With ``SUTRO_API_URL`` and ``SUTRO_API_KEY`` already set, no local server is started: the same pipelines
run against that API (hosted Sutro). Generation steps (drafted replies, the ``ticket-fields`` extraction
Function) run on sutro-local's built-in ``smollm2-135m-instruct`` (a 135M model: development and CI
quality), on a bigger model given with ``SUTRO_DEMO_MODEL_DIR`` / ``SUTRO_DEMO_OPENAI_URL``, or, for hosted
Sutro, on ``SUTRO_DEMO_GENERATION_MODEL``.

Example:
    $ ./run demo                                   # == .venv/bin/python -m example_pipelines.demo
    $ .venv/bin/python -m example_pipelines.demo --only dagster --day 2026-01-03   # 2026-01-03 and 2026-01-04
    $ .venv/bin/python -m example_pipelines.demo --days 1                          # one day, no reuse shown
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from example_pipelines import common

log = logging.getLogger("example_pipelines.demo")

PIPELINES = ("airflow", "dagster", "prefect")
LOCAL_GENERATION_MODEL = "demo-llm"
BUILTIN_GENERATION_MODEL = "smollm2-135m-instruct"  # sutro-local's default chat model (in sutro-local.yaml)


NO_JOB = "(none: every row stored)"


@dataclass
class PipelineRun:
    """What one orchestrator's run produced: its Sutro steps of every day (checked; each has its ``day``),
    wall time, and any error."""

    pipeline: str
    seconds: float = 0.0
    steps: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    log_path: Path | None = None

    @property
    def ok(self) -> bool:
        """True when the pipeline ran and every step's parquet file checked out."""
        return self.error is None and bool(self.steps)


def demo_days(first: str, count: int) -> list[str]:
    """The days the demo runs: ``first`` and the ``count - 1`` days after it.

    Example:
        >>> demo_days("2026-01-05", 2)
        ['2026-01-05', '2026-01-06']
    """
    start = dt.date.fromisoformat(first)
    return [(start + dt.timedelta(days=i)).isoformat() for i in range(count)]


def server_config() -> tuple[dict[str, Any], str | None]:
    """The sutro-local config for the demo, and the generative model's name when one is configured.

    Starts from ``example_pipelines/sutro-local.yaml``: ``all-minilm-l6-v2`` (embeddings, and the
    classification Functions in ``example_pipelines/functions``) and ``smollm2-135m-instruct`` (the
    generation steps and the ``ticket-fields`` extraction Function); adds, when asked for, a bigger
    generative model named ``demo-llm`` for the reply-drafting steps:
    ``SUTRO_DEMO_MODEL_DIR`` (a local Hugging Face model folder, transformers engine) or
    ``SUTRO_DEMO_OPENAI_URL`` + ``SUTRO_DEMO_OPENAI_MODEL`` (an OpenAI-compatible server: vLLM, Ollama, ...).

    Example:
        >>> cfg, gen = server_config()         # with neither variable set
        >>> sorted(cfg["models"]), gen
        (['all-minilm-l6-v2', 'smollm2-135m-instruct'], 'smollm2-135m-instruct')
    """
    import yaml

    config: dict[str, Any] = yaml.safe_load(common.SERVER_CONFIG.read_text())
    config["functions_dir"] = str((common.SERVER_CONFIG.parent / config["functions_dir"]).resolve())
    models: dict[str, Any] = config["models"]
    gen_price = {"input_per_1m": 0.1, "output_per_1m": 0.4}
    model_dir = os.environ.get("SUTRO_DEMO_MODEL_DIR")
    openai_url = os.environ.get("SUTRO_DEMO_OPENAI_URL")
    if model_dir and openai_url:
        raise ValueError("set only one of SUTRO_DEMO_MODEL_DIR and SUTRO_DEMO_OPENAI_URL")
    if model_dir:
        path = Path(model_dir).expanduser().resolve()
        if not (path / "config.json").is_file():
            raise ValueError(
                f"SUTRO_DEMO_MODEL_DIR={model_dir!r} is not a Hugging Face model folder (no config.json); "
                "point it at a downloaded instruct model, e.g. a Qwen2.5-0.5B-Instruct snapshot"
            )
        models[LOCAL_GENERATION_MODEL] = {
            "engine": "transformers", "price": gen_price, "chunk_size": 8,
            "options": {"path": str(path), "max_tokens": common.REPLY_SAMPLING["max_tokens"]},
        }
    elif openai_url:
        remote = os.environ.get("SUTRO_DEMO_OPENAI_MODEL")
        if not remote:
            raise ValueError(
                "SUTRO_DEMO_OPENAI_URL is set but SUTRO_DEMO_OPENAI_MODEL is not: set it to the model name that "
                "server serves, e.g. SUTRO_DEMO_OPENAI_MODEL=llama3.2 (Ollama) or Qwen/Qwen2.5-7B-Instruct (vLLM)"
            )
        options: dict[str, Any] = {"base_url": openai_url, "model": remote}
        if os.environ.get("SUTRO_DEMO_OPENAI_API_KEY"):
            options["api_key_env"] = "SUTRO_DEMO_OPENAI_API_KEY"  # the key stays out of the config file
        models[LOCAL_GENERATION_MODEL] = {"engine": "openai", "price": gen_price, "options": options}
    for name in (LOCAL_GENERATION_MODEL, BUILTIN_GENERATION_MODEL):
        if name in models:
            return config, name
    return config, None


def _fresh(path: Path) -> Path:
    """Empty a demo folder: every run starts clean (new server data, Airflow DB, Prefect home, outputs)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _child_env(base: dict[str, str], pipeline: str, workdir: Path) -> dict[str, str]:
    env = dict(base)
    if pipeline == "airflow":
        home = workdir / "airflow"
        env.update({
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            # The sutro connection the operators use, built from the same two variables as everything else.
            "AIRFLOW_CONN_SUTRO_DEFAULT": json.dumps(
                {"conn_type": "sutro", "host": base["SUTRO_API_URL"], "password": base["SUTRO_API_KEY"]}),
        })  # fmt: skip
    elif pipeline == "prefect":
        env.update({"PREFECT_HOME": str(workdir / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    "PREFECT_LOGGING_LEVEL": "WARNING",
                    # A fresh home migrates its SQLite DB on first start: slower than the 20 s default on 2 cores.
                    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"})
    elif pipeline == "dagster":
        env["DAGSTER_HOME"] = str(workdir / "dagster-home")
    return env


def _prepare(pipeline: str, env: dict[str, str], workdir: Path, log_file: Any) -> None:
    if pipeline == "airflow":
        (_fresh(workdir / "airflow") / "dags").mkdir()
        airflow_bin = Path(sys.executable).with_name("airflow")
        subprocess.run([str(airflow_bin), "db", "migrate"], env=env, check=True, stdout=log_file,
                       stderr=subprocess.STDOUT, timeout=300)
    elif pipeline == "prefect":
        _fresh(workdir / "prefect")
    elif pipeline == "dagster":
        _fresh(workdir / "dagster-home")


def run_pipeline(pipeline: str, days: list[str], env: dict[str, str], workdir: Path, timeout: float) -> PipelineRun:
    """Run one pipeline for ``days``, in order, in one child process (``example_pipelines.runners``); log goes
    to .demo/logs/."""
    run = PipelineRun(pipeline, log_path=workdir / "logs" / f"{pipeline}.log")
    result_path = workdir / "logs" / f"{pipeline}.json"
    result_path.unlink(missing_ok=True)
    child_env = _child_env(env, pipeline, workdir)
    started = time.monotonic()
    with open(run.log_path, "wb") as log_file:
        try:
            _prepare(pipeline, child_env, workdir, log_file)
            day_args = [arg for day in days for arg in ("--day", day)]
            proc = subprocess.run(
                [sys.executable, "-m", "example_pipelines.runners", pipeline, *day_args, "--result", str(result_path)],
                env=child_env, stdout=log_file, stderr=subprocess.STDOUT, timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            run.error = f"did not finish within {timeout:.0f} s"
        except subprocess.CalledProcessError as exc:
            run.error = f"setup command {exc.cmd[1:]} failed with exit code {exc.returncode}"
        else:
            result = json.loads(result_path.read_text()) if result_path.exists() else {}
            ran = result.get("days", [])
            run.steps = [{"day": d["day"], **step} for d in ran for step in d["steps"]]
            if proc.returncode != 0 or "error" in result or [d["day"] for d in ran] != days or not run.steps:
                run.error = result.get("error") or f"exited with code {proc.returncode} and no result"
    run.seconds = time.monotonic() - started
    return run


def check_steps(run: PipelineRun, client: Any) -> None:
    """Check each step as a user would, day after day; sets ``run.error`` on the first mismatch.

    For every step: its jobs (main, then repairs) SUCCEEDED; its parquet file has the manifest's rows and
    row statuses; the rows a job of this step computed are the rows the manifest says were not reused.
    With a row store, what was billed is what the server ran: the main job's row count is the manifest's
    ``rows_submitted`` (no job at all when it is 0), and every row the store gave names, in
    ``sutro_job_id``, a job this step ran on an earlier day. Adds ``job_seconds`` (the main job's) and
    ``repair_rows`` (rows sent again in repair jobs, from the server).
    """
    paid: dict[str, set[str]] = {}  # step -> the jobs it ran on the days checked so far
    for step in run.steps:
        earlier = paid.setdefault(step["step"], set())
        error = _check_step(step, client, earlier)
        if error:
            run.error = f"{step['day']} {step['step']}: {error}"
            return
        earlier.update(_job_ids(step))


def _job_ids(step: dict[str, Any]) -> list[str]:
    """The step's jobs, main first (``job_ids`` is only there when repairs ran); none when every row was stored."""
    return list(step.get("job_ids") or []) or ([step["job_id"]] if step["job_id"] else [])


def _check_step(step: dict[str, Any], client: Any, earlier_jobs: set[str]) -> str | None:
    import polars as pl

    main_id, job_ids = step["job_id"], _job_ids(step)
    if main_id is not None and job_ids[0] != main_id:
        return f"the manifest's job_ids {job_ids} do not start with its job {main_id}"
    jobs = [client.get_job(job_id) for job_id in job_ids]
    for job in jobs:
        if job.status.value != "SUCCEEDED":
            return f"job {job.job_id} is {job.status.value}"
    main = jobs[0] if main_id is not None else None
    step["job_seconds"] = None if main is None else main.duration_seconds
    step["repair_rows"] = sum(job.num_rows or 0 for job in jobs[1:])
    try:
        frame = pl.read_parquet(step["path"], columns=["sutro_row_status", "sutro_job_id"])
    except Exception as exc:  # a missing or unreadable file is a failed demo, said plainly
        return f"cannot read parquet {step['path']}: {exc}"
    step["file_rows"] = frame.height
    if frame.height != step["rows"]:
        return f"the manifest says {step['rows']} rows, the file {step['path']} has {frame.height}"
    reused = step.get("rows_from_store")
    if reused is None:  # no row store: the main job computed every row
        if main is None or main.num_rows != frame.height:
            return f"job {main_id} has {None if main is None else main.num_rows} rows, the file has {frame.height}"
    else:
        billed, ran = step.get("rows_submitted"), 0 if main is None else main.num_rows
        if billed != ran:
            what = "no job ran" if main is None else f"job {main_id} ran {ran} rows"
            return f"the manifest says {billed} distinct rows were billed, but {what}"
    by_job = frame["sutro_job_id"]
    if by_job.null_count():
        return f"{by_job.null_count()} rows say no job produced them (sutro_job_id is null)"
    from_store = by_job.filter(~by_job.is_in(job_ids))
    if from_store.len() != (reused or 0):
        return (f"{from_store.len()} rows were produced by jobs other than this run's {job_ids}, "
                f"the manifest says {reused or 0} came from the row store")
    unknown = sorted(set(from_store.unique().to_list()) - earlier_jobs)
    if unknown:
        return f"rows from the row store name job(s) {unknown}, which no earlier day of this step ran"
    counts = {status: n for status, n in (step.get("row_status_counts") or {}).items() if n}
    in_file = dict(frame["sutro_row_status"].value_counts().iter_rows())
    if step.get("row_status_counts") is not None and counts != in_file:
        return f"the manifest counts rows by status as {counts}, the file as {in_file}"
    return None


def _relative(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


def format_summary(runs: list[PipelineRun]) -> str:
    """The table the demo prints: pipeline, day, step, rows, job id, job duration, parquet path.

    Example:
        >>> print(format_summary([PipelineRun("dagster", 3.2, [{"day": "2026-01-05", "step": "ticket_triage",
        ...     "rows": 45, "job_id": "job-1", "job_seconds": 1.5, "path": "/tmp/t.parquet"}, {"day": "2026-01-06",
        ...     "step": "ticket_triage", "rows": 45, "job_id": None, "path": "/tmp/u.parquet"}])]))
        ... # doctest: +NORMALIZE_WHITESPACE
        pipeline  day         step           rows  job id                      job s  parquet
        dagster   2026-01-05  ticket_triage    45  job-1                         1.5  /tmp/t.parquet
        dagster   2026-01-06  ticket_triage    45  (none: every row stored)           /tmp/u.parquet
        dagster   (total)                                                        3.2  ok
    """
    header = ("pipeline", "day", "step", "rows", "job id", "job s", "parquet")
    table: list[tuple[str, ...]] = [header]
    for run in runs:
        for s in run.steps:
            secs = "" if s.get("job_seconds") is None else f"{s['job_seconds']:.1f}"
            table.append((run.pipeline, s["day"], s["step"], str(s["rows"]), s["job_id"] or NO_JOB, secs,
                          _relative(s["path"])))
        table.append((run.pipeline, "(total)", "", "", "", f"{run.seconds:.1f}",
                      "ok" if run.ok else f"FAILED: {run.error}"))
    return _columns(table, right=(3, 5))


def _reuse_cell(step: dict[str, Any]) -> str:
    if step.get("rows_from_store") is None:
        return f"{step['rows']} rows, no row store"
    cell = f"billed {step['rows_submitted']} of {step['rows']}"
    if step["rows_from_store"]:
        cell += f" ({step['rows_from_store']} reused)"
    if step.get("repair_rows"):
        cell += f" +{step['repair_rows']} repaired"
    return cell


def format_reuse(runs: list[PipelineRun]) -> str:
    """The row reuse table: per pipeline and step, each day's billed rows (distinct rows sent to Sutro) of
    its rows, the rows reused from the pipeline's row store and the rows sent again in repair jobs; then
    each day's totals over the steps with a row store.

    Example:
        >>> steps = [{"day": "2026-01-05", "step": "triage", "rows": 10, "rows_submitted": 10, "rows_from_store": 0},
        ...          {"day": "2026-01-06", "step": "triage", "rows": 10, "rows_submitted": 3, "rows_from_store": 7,
        ...           "repair_rows": 1}]
        >>> print(format_reuse([PipelineRun("airflow", steps=steps)]))  # doctest: +NORMALIZE_WHITESPACE
        pipeline  step    2026-01-05       2026-01-06
        airflow   triage  billed 10 of 10  billed 3 of 10 (7 reused) +1 repaired
        (total)           billed 10 of 10  billed 3 of 10 (7 reused)
    """
    days = sorted({s["day"] for run in runs for s in run.steps})
    table: list[tuple[str, ...]] = [("pipeline", "step", *days)]
    for run in runs:
        cells: dict[str, dict[str, str]] = {}
        for s in run.steps:
            cells.setdefault(s["step"], {})[s["day"]] = _reuse_cell(s)
        table += [(run.pipeline, step, *(by_day.get(day, "") for day in days)) for step, by_day in cells.items()]
    totals = []
    for day in days:
        stored = [s for run in runs for s in run.steps if s["day"] == day and s.get("rows_from_store") is not None]
        rows, billed, reused = (sum(s[k] for s in stored) for k in ("rows", "rows_submitted", "rows_from_store"))
        totals.append(f"billed {billed} of {rows}" + (f" ({reused} reused)" if reused else ""))
    table.append(("(total)", "", *totals))
    return _columns(table)


def _columns(table: list[tuple[str, ...]], right: tuple[int, ...] = ()) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    lines = []
    for row in table:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells + [row[-1]]).rstrip())
    return "\n".join(lines)


def _say(text: str) -> None:
    # The demo's report is its output: stdout on purpose (library modules log instead).
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _tail(path: Path | None, lines: int = 30) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the process exit code (0 only when every pipeline and check passed)."""
    parser = argparse.ArgumentParser(prog="./run demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--day", default=common.DEMO_DAY,
                        help=f"the first day, YYYY-MM-DD from {common.FIRST_DAY} to {common.LAST_DAY}")
    parser.add_argument("--days", default=2, type=int,
                        help="how many days, the first and those after it, one after the other (default 2: the "
                             "second reuses the first's rows; 1: one day)")
    parser.add_argument("--only", default=",".join(PIPELINES), help="comma-separated: airflow,dagster,prefect")
    parser.add_argument("--workdir", default=".demo", type=Path, help="where server data, homes, logs and parquet go")
    parser.add_argument("--timeout", default=600.0, type=float, help="seconds allowed per pipeline (all its days)")
    parser.add_argument("--parallel", default=3, type=int, choices=(1, 2, 3),
                        help="pipelines run at once (1: one after the other)")
    args = parser.parse_args(argv)
    selected = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(selected) - set(PIPELINES))
    if unknown or not selected:
        parser.error(f"--only: unknown pipeline(s) {unknown}; choose from {','.join(PIPELINES)}")
    try:
        common.load_tickets(args.day)
    except ValueError as exc:
        parser.error(f"--day: {exc}")
    if args.days < 1:
        parser.error("--days: at least 1")
    days = demo_days(args.day, args.days)
    if days[-1] > common.LAST_DAY:
        parser.error(f"--day {args.day} --days {args.days}: runs to {days[-1]}, past the data's last day "
                     f"{common.LAST_DAY}; start earlier or run fewer days")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    workdir = args.workdir.resolve()
    for sub in ("logs", "output"):
        _fresh(workdir / sub)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "SUTRO_DEMO_OUTPUT": str(workdir / "output"), "PYTHONUNBUFFERED": "1"}
    # The runners import example_pipelines from the repo, wherever the demo is started from.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(common.PACKAGE_DIR.parent), env.get("PYTHONPATH")]))

    server = None
    if os.environ.get("SUTRO_API_URL"):
        if not os.environ.get("SUTRO_API_KEY"):
            _say("SUTRO_API_URL is set but SUTRO_API_KEY is not: set both to run against that API, or unset "
                 "SUTRO_API_URL to run against a local sutro-local server.")
            return 2
        _say(f"==> using the Sutro API at {os.environ['SUTRO_API_URL']} (SUTRO_API_URL is set)")
        gen_model = common.generation_model()
    else:
        from sutro_local.testing import LocalServer

        try:
            config, gen_model = server_config()
        except ValueError as exc:
            _say(f"error: {exc}")
            return 2
        _say("==> starting sutro-local (models: " + ", ".join(config["models"]) + ")")
        server = LocalServer(_fresh(workdir / "sutro-local"), config, startup_timeout=120)
        try:
            server.start()
        except RuntimeError as exc:
            _say(f"error: sutro-local did not start: {exc}")
            return 1
        env.update({"SUTRO_API_URL": server.url, "SUTRO_API_KEY": server.api_key})
        _say(f"    serving at {server.url} (log: {_relative(str(server.log_path))})")
    if gen_model:
        env["SUTRO_DEMO_GENERATION_MODEL"] = gen_model
    else:
        env.pop("SUTRO_DEMO_GENERATION_MODEL", None)

    from sutro_core import SutroClient

    runs: list[PipelineRun] = []
    try:
        with SutroClient(api_key=env["SUTRO_API_KEY"], api_url=env["SUTRO_API_URL"]) as client:
            # The pipelines run side by side: each mostly waits (imports, its orchestrator's own startup, job
            # polling), so in parallel the demo takes as long as the slowest one.
            with ThreadPoolExecutor(max_workers=args.parallel) as pool:
                futures = {}
                for pipeline in selected:
                    _say(f"==> {pipeline}: running the example pipeline for {' then '.join(days)} "
                         f"(log: {_relative(str(workdir / 'logs' / pipeline))}.log)")
                    futures[pipeline] = pool.submit(run_pipeline, pipeline, days, env, workdir, args.timeout)
                for future in as_completed(futures.values()):
                    run = future.result()
                    if run.error is None:
                        check_steps(run, client)
                    _say(f"    {run.pipeline}: {'ok' if run.ok else 'FAILED'} after {run.seconds:.0f} s")
                    if run.error:
                        _say(f"    {run.error}\n    last lines of {run.log_path}:\n{_tail(run.log_path)}")
            runs = [futures[p].result() for p in selected]
    finally:
        if server is not None:
            server.stop()

    _say("\n" + format_summary(runs) + "\n")
    if any(s.get("rows_from_store") is not None for run in runs for s in run.steps):
        _say("Rows billed and reused (each pipeline's row store, "
             f"{_relative(common.row_store('PIPELINE', str(workdir / 'output')))}):\n" + format_reuse(runs) + "\n"
             "billed: distinct rows sent to Sutro (identical tickets in one run are sent once)\n"
             "reused: rows whose result came from the row store (each names the earlier job that paid for it)\n"
             "repaired: rows sent again in a repair job; a reply still cut after it is not stored, and is billed "
             "again the next day\n")
    if not gen_model:
        _say(common.GENERATION_HELP + "\n")
    elif server is not None:
        small = ""
        if gen_model == BUILTIN_GENERATION_MODEL:
            small = " (a 135M model for local development and CI; expect rough answers)"
        _say(common.GENERATION_NOTE.format(model=gen_model, small=small) + "\n")
    failed = [r.pipeline for r in runs if not r.ok]
    if failed:
        _say(f"demo FAILED: {', '.join(failed)} (logs in {_relative(str(workdir / 'logs'))}/)")
        return 1
    jobs = {job_id for r in runs for s in r.steps for job_id in _job_ids(s)}
    no_job = sum(1 for r in runs for s in r.steps if s["job_id"] is None)
    _say(f"demo OK: {len(days)} day(s), {len(jobs)} Sutro jobs" + (f", {no_job} steps needed none" if no_job else "")
         + f"; parquet under {_relative(str(workdir / 'output'))}/ "
         "(open one with: .venv/bin/python -c \"import polars as pl; print(pl.read_parquet('PATH'))\")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
