"""Run every benchmark and regenerate the figures section of benchmarks/README.md.

Each script runs as its own process and saves its markdown section to ``benchmarks/results/<name>.md``
(with the command, machine and date that produced it); the README's part between the
``<!-- BENCHMARKS:START -->`` and ``<!-- BENCHMARKS:END -->`` markers is rebuilt from those files.
A section that was not re-run keeps its last saved figures (its own command line says which run).

Usage::

    .venv/bin/python benchmarks/run_all.py --quick          # every benchmark at its quick size (~10 min)
    .venv/bin/python benchmarks/run_all.py                  # full sizes (~30 min on 2 cores)
    .venv/bin/python benchmarks/run_all.py --readme-only    # rebuild the README from saved sections
    .venv/bin/python benchmarks/run_all.py --only waiting   # one benchmark, then rebuild
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
RESULTS = HERE / "results"
START, END = "<!-- BENCHMARKS:START -->", "<!-- BENCHMARKS:END -->"

# (section name, script, extra args); sections appear in the README in this order.
BENCHMARKS: list[tuple[str, str, list[str]]] = [
    ("results_download", "results_download.py", []),
    ("results_download_5m", "results_download.py", ["--rows", "5000000", "--repeats", "1"]),
    ("waiting", "waiting.py", []),
    ("submission", "submission.py", []),
    ("local_engines", "local_engines.py", []),
]


def run_one(name: str, script: str, extra: list[str], quick: bool) -> None:
    """Run one benchmark script (it saves its own section)."""
    args = [sys.executable, str(HERE / script), *extra, "--save", name]
    if quick and not extra:
        args.append("--quick")
    print(f"==> {' '.join(args[1:])}", flush=True)
    subprocess.run(args, check=True)


def rebuild_readme() -> None:
    """Replace the README's figures section with the saved sections, in BENCHMARKS order."""
    sections = [(RESULTS / f"{name}.md") for name, _, _ in BENCHMARKS]
    body = "\n".join(p.read_text().rstrip() + "\n" for p in sections if p.exists())
    text = README.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{README} lacks the {START} / {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{body}{END}{tail}")
    print(f"rebuilt {README.relative_to(HERE.parent)} from {sum(p.exists() for p in sections)} section(s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="quick sizes (the 5M-row run is skipped)")
    parser.add_argument("--readme-only", action="store_true", help="only rebuild the README from saved sections")
    parser.add_argument("--only", choices=[n for n, _, _ in BENCHMARKS], action="append", help="run only these")
    args = parser.parse_args()
    if not args.readme_only:
        for name, script, extra in BENCHMARKS:
            if args.only and name not in args.only:
                continue
            if args.quick and extra and not args.only:
                continue  # the 5M-row run has no quick size
            run_one(name, script, extra, args.quick)
    rebuild_readme()


if __name__ == "__main__":
    main()
