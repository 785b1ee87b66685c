"""``./run demo``: start sutro-local, run the Airflow, Dagster and Prefect example pipelines, print a summary.

Steps: start ``sutro-local`` in the background on a free port (data under ``.demo/sutro-local``), point
``SUTRO_API_URL`` / ``SUTRO_API_KEY`` at it, run each pipeline in its own runtime in a child process
(Airflow ``dag.test()`` in a fresh ``AIRFLOW_HOME``, Dagster ``materialize``, the Prefect flow in-process
on an ephemeral API), check every parquet file it reports against the Sutro job, print one table, stop
the server. Exits 1 when any pipeline or check fails.

With ``SUTRO_API_URL`` and ``SUTRO_API_KEY`` already set, no local server is started: the same pipelines
run against that API (hosted Sutro). Generation steps (drafted replies, the ``ticket-fields`` extraction
Function) run on sutro-local's built-in ``smollm2-135m-instruct`` (a 135M model: development and CI
quality), on a bigger model given with ``SUTRO_DEMO_MODEL_DIR`` / ``SUTRO_DEMO_OPENAI_URL``, or, for hosted
Sutro, on ``SUTRO_DEMO_GENERATION_MODEL``.

Example:
    $ ./run demo                                   # == .venv/bin/python -m example_pipelines.demo
    $ .venv/bin/python -m example_pipelines.demo --only dagster --day 2026-01-03
"""

from __future__ import annotations

import argparse
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


@dataclass
class PipelineRun:
    """What one orchestrator's run produced: its Sutro steps (checked), wall time, and any error."""

    pipeline: str
    seconds: float = 0.0
    steps: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    log_path: Path | None = None

    @property
    def ok(self) -> bool:
        """True when the pipeline ran and every step's parquet file checked out."""
        return self.error is None and bool(self.steps)


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


def run_pipeline(pipeline: str, day: str, env: dict[str, str], workdir: Path, timeout: float) -> PipelineRun:
    """Run one pipeline in a child process (``example_pipelines.runners``); log goes to .demo/logs/."""
    run = PipelineRun(pipeline, log_path=workdir / "logs" / f"{pipeline}.log")
    result_path = workdir / "logs" / f"{pipeline}.json"
    result_path.unlink(missing_ok=True)
    child_env = _child_env(env, pipeline, workdir)
    started = time.monotonic()
    with open(run.log_path, "wb") as log_file:
        try:
            _prepare(pipeline, child_env, workdir, log_file)
            proc = subprocess.run(
                [sys.executable, "-m", "example_pipelines.runners", pipeline, "--day", day, "--result", str(result_path)],
                env=child_env, stdout=log_file, stderr=subprocess.STDOUT, timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            run.error = f"did not finish within {timeout:.0f} s"
        except subprocess.CalledProcessError as exc:
            run.error = f"setup command {exc.cmd[1:]} failed with exit code {exc.returncode}"
        else:
            result = json.loads(result_path.read_text()) if result_path.exists() else {}
            run.steps = result.get("steps", [])
            if proc.returncode != 0 or "error" in result or not run.steps:
                run.error = result.get("error") or f"exited with code {proc.returncode} and no result"
    run.seconds = time.monotonic() - started
    return run


def check_steps(run: PipelineRun, client: Any) -> None:
    """Check each step as a user would: the parquet file exists, has one row per input row of a SUCCEEDED
    Sutro job; adds the job's duration. Sets ``run.error`` on the first mismatch."""
    import polars as pl

    for step in run.steps:
        job = client.get_job(step["job_id"])
        step["job_seconds"] = job.duration_seconds
        step["status"] = job.status.value
        try:
            file_rows = pl.scan_parquet(step["path"]).select(pl.len()).collect().item()
        except Exception as exc:  # a missing or unreadable file is a failed demo, said plainly
            run.error = f"{step['step']}: cannot read parquet {step['path']}: {exc}"
            return
        step["file_rows"] = file_rows
        if job.status.value != "SUCCEEDED" or file_rows != step["rows"] or file_rows != job.num_rows:
            run.error = (f"{step['step']}: job {job.job_id} is {job.status.value} with {job.num_rows} rows, "
                         f"manifest says {step['rows']} rows, the file has {file_rows}")
            return


def _relative(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


def format_summary(runs: list[PipelineRun]) -> str:
    """The table the demo prints: pipeline, step, rows, job id, job duration, parquet path.

    Example:
        >>> print(format_summary([PipelineRun("dagster", 3.2, [{"step": "ticket_triage", "rows": 45,
        ...     "job_id": "job-1", "job_seconds": 1.5, "path": "/tmp/t.parquet"}])]))  # doctest: +NORMALIZE_WHITESPACE
        pipeline  step           rows  job id  job s  parquet
        dagster   ticket_triage    45  job-1     1.5  /tmp/t.parquet
        dagster   (total)                        3.2  ok
    """
    header = ("pipeline", "step", "rows", "job id", "job s", "parquet")
    table: list[tuple[str, ...]] = [header]
    for run in runs:
        for s in run.steps:
            secs = "" if s.get("job_seconds") is None else f"{s['job_seconds']:.1f}"
            table.append((run.pipeline, s["step"], str(s["rows"]), s["job_id"], secs, _relative(s["path"])))
        table.append((run.pipeline, "(total)", "", "", f"{run.seconds:.1f}", "ok" if run.ok else f"FAILED: {run.error}"))
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    lines = []
    for row in table:
        cells = [c.rjust(w) if i in (2, 4) else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
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
    parser.add_argument("--day", default=common.DEMO_DAY, help=f"YYYY-MM-DD from {common.FIRST_DAY} to {common.LAST_DAY}")
    parser.add_argument("--only", default=",".join(PIPELINES), help="comma-separated: airflow,dagster,prefect")
    parser.add_argument("--workdir", default=".demo", type=Path, help="where server data, homes, logs and parquet go")
    parser.add_argument("--timeout", default=600.0, type=float, help="seconds allowed per pipeline")
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
                    _say(f"==> {pipeline}: running the example pipeline for {args.day} "
                         f"(log: {_relative(str(workdir / 'logs' / pipeline))}.log)")
                    futures[pipeline] = pool.submit(run_pipeline, pipeline, args.day, env, workdir, args.timeout)
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
    _say(f"demo OK: {sum(len(r.steps) for r in runs)} Sutro jobs, parquet under {_relative(str(workdir / 'output'))}/ "
         "(open one with: .venv/bin/python -c \"import polars as pl; print(pl.read_parquet('PATH'))\")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
