"""The bare-FastAPI contender of `server_reads.py`: `async def` routes returning fixed JSON.

One plain `FastAPI()` app (no middleware, no dependencies, no database), served by uvicorn with
the settings `sutro-local serve` uses (`access_log=False`, uvicorn's default loop and HTTP parser).
Each route returns, as a dict, the JSON body sutro-local answered for the same path (read from
`--payloads`, a JSON file {path: body}), so both contenders serialise the same document.

    .venv/bin/python benchmarks/_bare_server.py --port 8600 --payloads /tmp/payloads.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path


def build_app(payloads: dict[str, object]):
    """A FastAPI app with one `async def` GET route per payload path (plus /health)."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    for path, body in payloads.items():
        # a fresh copy per route; the handler returns the same dict each call (as an app
        # returning a cached document would)
        def make(doc: object):
            async def route() -> object:
                return doc

            return route

        app.add_api_route(path, make(copy.deepcopy(body)), methods=["GET"])
    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--payloads", required=True, help="JSON file {path: body}")
    args = p.parse_args(argv)
    import uvicorn

    app = build_app(json.loads(Path(args.payloads).read_text()))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
