"""Every shell command in README.md and docs/*.md is checked here, cheaply.

The commands come from the fenced ``bash``/``sh`` blocks and from inline code that starts with one of
our programs (``./run``, ``sutro-local``, ``dagster``, ``airflow``, ``prefect``). Each is checked by
what it is:

- ``sutro-local ...``: parsed by the real CLI parser; ``--config`` files must exist; the README's
  ``serve`` line is started for real (temp data dir, free port), answers, prints the console URL, stops.
- ``airflow ...``: parsed by Airflow's own CLI parser (one subprocess, throwaway AIRFLOW_HOME).
- ``prefect ...`` / ``dagster ...``: the command path answers ``--help``; a ``-m`` module imports.
- ``./run X``: X is a ./run command; its test paths (and those of ``python -m pytest``) exist.
- ``source .venv/bin/activate``: the venv running these tests has that script and the programs the docs
  then call by name.
- ``export`` lines, placeholders and the official-SDK install (network) are recorded as not run.

A command of any other kind fails the test: add a check for it here.
Not covered: inline one-liners such as ``.venv/bin/python -c ...`` (the Python tours have their own
tests, e.g. tests/airflow/test_docs_tour.py) and long-running commands beyond start/stop
(``./run demo``, ``dagster dev``: tests/examples and tests/dagster/test_dagster_dev.py run those).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent
INLINE = re.compile(r"`((?:\./run|(?:\.venv/bin/)?(?:sutro-local|dagster|airflow|prefect)) [^`]+)`")
ENV_ASSIGN = re.compile(r"^[A-Z_][A-Z0-9_]*=")
RUN_COMMANDS = {"demo", "test", "install"}
# Commands that are documented but deliberately not run here, with why.
NOT_RUN = {
    "export": "sets environment variables only",
    "python3.11": "installs the official `sutro` SDK from PyPI (network); tests/compat covers the SDK",
}


def _logical_lines(block: str) -> list[str]:
    """Lines of a shell block, comments dropped, multi-line quoted strings and `\\` joined."""
    out, buf = [], ""
    for raw in block.splitlines():
        line = raw if buf else raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        buf = f"{buf}\n{line}" if buf else line
        if buf.endswith("\\"):
            buf = buf[:-1]
            continue
        try:
            shlex.split(buf, comments=True)
        except ValueError:  # an open quote: the command goes on
            continue
        out.append(buf)
        buf = ""
    return out


def commands_in(text: str, label: str) -> list[tuple[str, list[str]]]:
    """(where, argv) of every command in a markdown text, env-var prefixes removed, `&&` chains split."""
    found: list[tuple[str, list[str]]] = []
    lines = []
    for m in re.finditer(r"```(?:bash|sh|shell)\n(.*?)```", text, re.DOTALL):
        lines += _logical_lines(m.group(1))
    lines += [m.group(1) for m in INLINE.finditer(re.sub(r"```.*?```", "", text, flags=re.DOTALL))]
    for line in lines:
        words = shlex.split(line, comments=True)
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            argv, words = words[:cut], words[cut + 1 :]
            while argv and ENV_ASSIGN.match(argv[0]):
                argv = argv[1:]
            if argv:
                found.append((f"{label}: {line.splitlines()[0]}", argv))
    return found


def documented_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every command in the docs."""
    return [c for path in DOCS for c in commands_in(path.read_text(), str(path.relative_to(REPO)))]


COMMANDS = documented_commands()


def _program(argv: list[str]) -> str:
    prog = Path(argv[0]).name if argv[0].startswith(".venv/") else argv[0]
    if prog.startswith("python") and argv[1:3] == ["-m", "sutro_local"]:
        return "sutro-local"
    if prog.startswith("python") and argv[1:3] == ["-m", "sutro_core.row_store"]:
        return "row-store"
    return prog


def _kind(argv: list[str]) -> str:
    prog = _program(argv)
    if prog in ("sutro-local", "row-store", "airflow", "prefect", "dagster", "./run", "source") or prog in NOT_RUN:
        return prog
    if prog.startswith(("/tmp/sdk/", ".venv-sdk/")):
        return "python3.11"  # the official SDK's own venv, made by the line before
    if argv[:3] in (["python", "-m", "pytest"], [".venv/bin/python", "-m", "pytest"]):
        return "pytest"
    return "unknown"


def test_the_docs_have_commands_and_each_is_of_a_checked_kind():
    assert len(COMMANDS) >= 15, COMMANDS
    unknown = [where for where, argv in COMMANDS if _kind(argv) == "unknown"]
    assert not unknown, f"commands no check covers (add one to {Path(__file__).name}): {unknown}"


def test_the_readmes_tours_say_how_to_run_them():
    """The tours' own commands are among the checked ones: the venv, the Airflow DAG by its id, Prefect's
    telemetry switch (without it a flow logs an ERROR traceback)."""
    readme = (REPO / "README.md").read_text()
    tours = readme[readme.index("## 60-second tours") : readme.index("## Configuration")]
    argvs = [argv for _, argv in commands_in(tours, "README.md tours")]
    assert ["source", ".venv/bin/activate"] in argvs and ["./run", "install"] in argvs
    dag_id = re.search(r'with DAG\("([^"]+)"', tours).group(1)  # type: ignore[union-attr]
    assert any(_program(a) == "airflow" and a[1:4] == ["dags", "test", dag_id] for a in argvs), argvs
    assert "$AIRFLOW_HOME/dags" in tours  # where `airflow dags test` looks for the file
    assert ["export", "PREFECT_SERVER_ANALYTICS_ENABLED=false"] in argvs


@pytest.mark.parametrize(
    "where,argv", [c for c in COMMANDS if _kind(c[1]) == "source"], ids=lambda v: str(v)[:60]
)
def test_source_activates_a_venv_with_the_programs_the_docs_call(where, argv):
    assert argv[1:] == [".venv/bin/activate"], f"{where}: the docs source only the project's venv"
    assert (BIN / "activate").is_file(), f"{where}: {BIN} has no activate script"
    for prog in ("python", "sutro-local", "airflow", "dagster", "prefect"):
        assert (BIN / prog).is_file(), f"{where}: after activating, `{prog}` is not the venv's"


@pytest.mark.parametrize(
    "where,argv", [c for c in COMMANDS if _kind(c[1]) == "row-store"], ids=lambda v: str(v)[:60]
)
def test_row_store_commands_parse(where, argv):
    from sutro_core.row_store import build_parser

    build_parser().parse_args(argv[3:])


def _sutro_local_argv(argv: list[str]) -> list[str]:
    return argv[3:] if argv[0].startswith("python") else argv[1:]


@pytest.mark.parametrize(
    "where,argv", [c for c in COMMANDS if _kind(c[1]) == "sutro-local"], ids=lambda v: str(v)[:60]
)
def test_sutro_local_commands_parse_and_their_files_exist(where, argv):
    from sutro_local.cli import build_parser

    args = build_parser().parse_args(_sutro_local_argv(argv))
    config = getattr(args, "config", None)
    if config:
        assert (REPO / config).is_file(), f"{where}: --config {config} does not exist"


@pytest.mark.parametrize(
    "where,argv", [c for c in COMMANDS if _kind(c[1]) == "./run"], ids=lambda v: str(v)[:60]
)
def test_run_commands_exist(where, argv):
    assert argv[1] in RUN_COMMANDS, f"{where}: ./run has no command {argv[1]!r}"
    _test_paths_exist(where, argv[2:])


@pytest.mark.parametrize(
    "where,argv", [c for c in COMMANDS if _kind(c[1]) == "pytest"], ids=lambda v: str(v)[:60]
)
def test_pytest_commands_name_existing_tests(where, argv):
    _test_paths_exist(where, argv[3:])


def _test_paths_exist(where: str, args: list[str]) -> None:
    for arg in args:
        if arg.startswith("tests/"):
            assert (REPO / arg.split("::")[0]).exists(), f"{where}: {arg} does not exist"


def test_airflow_commands_parse_with_airflows_own_parser(tmp_path):
    cmds = [(w, a[1:]) for w, a in COMMANDS if _kind(a) == "airflow"]
    assert cmds
    script = (
        "import json, sys\n"
        "from airflow.cli.cli_parser import get_parser\n"
        "bad = []\n"
        "for where, argv in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        get_parser().parse_args(argv)\n"
        "    except SystemExit as exc:\n"
        "        bad.append((where, exc.code))\n"
        "print(json.dumps(bad))\n"
    )
    # CeleryExecutor: the `airflow celery ...` commands (docs/scaling.md) exist only under that executor.
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor"}
    r = subprocess.run(
        [sys.executable, "-c", script, json.dumps(cmds)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == [], r.stderr[-2000:]


def _command_path(argv: list[str]) -> list[str]:
    """The subcommand words of a CLI call (up to the first option or argument-looking word)."""
    path = []
    for word in argv[1:]:
        if word.startswith("-") or not re.fullmatch(r"[a-z][a-z-]*", word):
            break
        path.append(word)
    return path


@pytest.mark.parametrize("prog", ["prefect", "dagster"])
def test_prefect_and_dagster_commands_answer_help_and_their_modules_import(prog, tmp_path):
    cmds = [(w, a) for w, a in COMMANDS if _kind(a) == prog]
    assert cmds, f"no {prog} command in the docs"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "DAGSTER_HOME": str(tmp_path)}
    for path in sorted({tuple(_command_path(a)) for _, a in cmds}):
        r = subprocess.run(
            [str(BIN / prog), *path, "--help"],
            check=False,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert r.returncode == 0, (
            f"`{prog} {' '.join(path)} --help` failed:\n{r.stdout[-1000:]}{r.stderr[-1000:]}"
        )
    for where, argv in cmds:
        if "-m" in argv:
            module = argv[argv.index("-m") + 1]
            assert importlib.util.find_spec(module) is not None, f"{where}: module {module} not importable"


def test_the_readmes_serve_command_starts_answers_and_stops(tmp_path):
    from sutro_local.testing import free_port

    serve = next(
        a for w, a in COMMANDS if w.startswith("README.md") and _kind(a) == "sutro-local" and "serve" in a
    )
    argv = [str(BIN / "sutro-local"), *_sutro_local_argv(serve)]
    port = free_port()
    argv = [
        *argv[: argv.index("--port") + 1],
        str(port),
        *argv[argv.index("--port") + 2 :],
        "--data-dir",
        str(tmp_path / "data"),
    ]
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        printed = log.read_text()
        assert proc.poll() is None, printed
        assert (
            f"web console: http://127.0.0.1:{port}/console/jobs" in printed
            and "API key: sk-local-" in printed
        )
        key = re.search(r"API key: (\S+)", printed).group(1)  # type: ignore[union-attr]
        r = httpx.get(f"http://127.0.0.1:{port}/models", headers={"Authorization": f"Key {key}"})
        assert r.status_code == 200 and r.json()["models"], r.text
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    # uvicorn re-raises the SIGTERM it handled after its graceful shutdown; -9 would mean we had to kill it
    assert proc.returncode in (0, -signal.SIGTERM), log.read_text()[-2000:]
    assert "Traceback" not in log.read_text()
