"""An Airflow 3 deployment as production runs it, on one machine: PostgreSQL metadata database, the
CeleryExecutor on Redis, and every component its own process (api-server for the workers' execution API,
scheduler, dag-processor, triggerer, and Celery workers with distinct names).

Each worker stands for a machine of its own: its own Celery hostname, its own task-instance hostname
(``deploy.worker_identity``), concurrency 1, and its own process group, so ``kill_worker`` takes the
worker, its pool process, the task supervisor and the task down at once, as losing the machine would.

Example:
    >>> with AirflowCeleryDeployment(tmp_path, pg, redis, dags=[dag_file], env=extra) as af:  # doctest: +SKIP
    ...     af.start_workers("worker-a", "worker-b")
    ...     ti = af.wait_for_task_state("sutro_on_celery", "embed", "running")
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sutro_local.testing import free_port
from support.services import PostgresServer, RedisServer, Service, wait_for

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


class AirflowCeleryDeployment:
    """Migrates a fresh metadata database and runs the Airflow components; ``stop()`` ends them all.

    ``env``: extra environment for every component (connections as ``AIRFLOW_CONN_*``, DAG settings).
    ``task_heartbeat_timeout``: seconds without a task heartbeat before the scheduler fails the task
    instance (and retries it); Airflow's default is 300 s, far too long for a test.
    """

    def __init__(self, root: Path, postgres: PostgresServer, redis: RedisServer, *, dags: Iterable[Path],
                 env: Mapping[str, str] | None = None, task_heartbeat_timeout: int = 20) -> None:
        self.root = Path(root)
        self.home = self.root / "airflow-home"
        self.postgres, self.redis = postgres, redis
        self.dags = list(dags)
        self.api_port = free_port()
        self.services: dict[str, Service] = {}
        self.killed: set[str] = set()
        self.db_name = f"airflow_{secrets.token_hex(4)}"
        self.env = self._env(env or {}, task_heartbeat_timeout)

    def _env(self, extra: Mapping[str, str], heartbeat_timeout: int) -> dict[str, str]:
        db = self.postgres.url(self.db_name)
        base = f"http://127.0.0.1:{self.api_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST_"))}
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
            "AIRFLOW__CELERY__BROKER_URL": self.redis.url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db.replace("+psycopg2", ""),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
            # Shared secrets every component must agree on (a real deployment puts them in its config).
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__BASE_URL": base,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
            # A dead worker's task is failed (and retried) after this long without a heartbeat; live tasks
            # heartbeat every 3 s, so only a long stall of the whole box could trip it by mistake.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(heartbeat_timeout),
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "3",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "deploy.worker_identity.hostname",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO / "core"), str(REPO), os.environ.get("PYTHONPATH", "")]),
            "PYTHONUNBUFFERED": "1",
        })
        env.update(extra)
        return env

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> AirflowCeleryDeployment:
        """Migrate the database, then start api-server, scheduler, dag-processor and triggerer."""
        (self.home / "dags").mkdir(parents=True, exist_ok=True)
        for dag in self.dags:
            shutil.copy(dag, self.home / "dags" / Path(dag).name)
        self.postgres.create_database(self.db_name)
        self._flush_broker()
        migrate = subprocess.run([AIRFLOW, "db", "migrate"], env=self.env, capture_output=True, text=True,
                                 timeout=600)
        assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
        for name, argv in (("api-server", ["api-server", "--apps", "execution"]), ("scheduler", ["scheduler"]),
                           ("dag-processor", ["dag-processor"]), ("triggerer", ["triggerer"])):
            self._start(name, [AIRFLOW, *argv])
        wait_for(self._api_up, 180, "the api-server to answer", interval=1)
        return self

    def _flush_broker(self) -> None:
        """Empty the broker: a shared Redis may hold an earlier deployment's queued or unacked messages."""
        import redis

        client = redis.Redis.from_url(self.redis.url)
        try:
            client.flushdb()
        finally:
            client.close()

    def _start(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> Service:
        service = Service(name, argv, self.root / "logs" / f"{name}.log", env={**self.env, **(env or {})},
                          cwd=self.root, grace=30).start()
        self.services[name] = service
        return service

    def _api_up(self) -> bool:
        import httpx

        self.assert_running(except_=self.killed)
        try:
            return httpx.get(f"http://127.0.0.1:{self.api_port}/execution/health", timeout=3).status_code < 500
        except httpx.HTTPError:
            return False

    def start_workers(self, *names: str) -> None:
        """One ``airflow celery worker`` per name, concurrency 1, as if each ran on a machine called ``name``."""
        for name in names:
            self._start(name, [AIRFLOW, "celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", "1",
                               "--pid", str(self.root / f"{name}.pid"), "--skip-serve-logs", "--without-mingle",
                               "--without-gossip"],
                        env={"DEPLOY_WORKER_NAME": name})
        for name in names:
            wait_for(lambda n=name: self._worker_ready(n), 180, f"Celery worker {name} to be ready", interval=1)

    def _worker_ready(self, name: str) -> bool:
        self.assert_running(except_=self.killed)
        return " ready." in self.services[name].log_tail(20000)

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker's whole process tree at once: no handler, no ack, no last heartbeat."""
        self.killed.add(name)
        self.services[name].kill()

    def assert_running(self, *, except_: Iterable[str] = ()) -> None:
        """Fail with the component's log when one of them has exited."""
        skip = set(except_)
        for name, service in self.services.items():
            if name not in skip and not service.running():
                raise AssertionError(f"Airflow {name} exited ({service.proc.returncode}):\n{service.log_tail()}")

    def stop(self) -> None:
        """Stop every component (SIGTERM, then SIGKILL of the whole tree). Safe to call twice."""
        for service in reversed(list(self.services.values())):
            service.stop()

    def __enter__(self) -> AirflowCeleryDeployment:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the metadata database says ------------------------------------------------------------------
    def query(self, sql: str, *args: Any) -> list[tuple]:
        """Rows of ``sql`` against the metadata database (read-only use)."""
        conn = self.postgres.connect(self.db_name)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall()
        finally:
            conn.close()

    def task_instance(self, dag_id: str, task_id: str) -> dict[str, Any] | None:
        """The current try of the task: state, try_number, hostname (the worker's name)."""
        rows = self.query("select state, try_number, hostname from task_instance where dag_id = %s and task_id = %s",
                          dag_id, task_id)
        if not rows:
            return None
        state, try_number, hostname = rows[0]
        return {"state": state, "try_number": try_number, "hostname": hostname}

    def task_tries(self, dag_id: str, task_id: str) -> list[dict[str, Any]]:
        """Every try of the task (earlier ones from task_instance_history), in order."""
        rows = self.query("select try_number, state, hostname from task_instance_history "
                          "where dag_id = %s and task_id = %s order by try_number", dag_id, task_id)
        current = self.task_instance(dag_id, task_id)
        tries = [{"try_number": n, "state": s, "hostname": h} for n, s, h in rows]
        if current and all(t["try_number"] != current["try_number"] for t in tries):
            tries.append({k: current[k] for k in ("try_number", "state", "hostname")})
        return tries

    def dag_run_state(self, dag_id: str) -> str | None:
        """The state of the DAG's (only) run."""
        rows = self.query("select state from dag_run where dag_id = %s", dag_id)
        return rows[0][0] if rows else None

    def xcom(self, dag_id: str, task_id: str, key: str = "return_value") -> Any:
        """An XCom value as stored (JSON)."""
        rows = self.query("select value from xcom where dag_id = %s and task_id = %s and key = %s",
                          dag_id, task_id, key)
        return rows[0][0] if rows else None

    def logs(self, dag_id: str) -> str:
        """Every task log of ``dag_id`` (Airflow writes them under the shared AIRFLOW_HOME)."""
        root = self.home / "logs"
        return "".join(p.read_text(errors="replace") for p in sorted(root.rglob("*"))
                       if p.is_file() and f"dag_id={dag_id}" in str(p))

    def wait_for_task(self, dag_id: str, task_id: str, pred, timeout: float, what: str) -> dict[str, Any]:
        """Wait until the task instance satisfies ``pred``, checking that no component died meanwhile."""

        def check():
            self.assert_running(except_=self.killed)
            ti = self.task_instance(dag_id, task_id)
            return ti if ti and pred(ti) else None

        return wait_for(check, timeout, what, interval=0.5)
