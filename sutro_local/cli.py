"""The `sutro-local` command: serve, manage keys, publish Functions.

Example:
    $ sutro-local serve --port 8484 --data-dir .sutro-local
    $ sutro-local serve --default-engine llamacpp     # the default chat model on llama.cpp, whatever the CPU
    $ sutro-local keys create ci
    $ sutro-local keys list
    $ sutro-local keys revoke ci
    $ sutro-local functions publish ticket-triage.yaml
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

DEFAULT_DATA_DIR = ".sutro-local"


def _out(text: str) -> None:
    # the CLI's own output (URL, keys) goes to stdout on purpose; library code logs instead
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def default_key(data_dir: Path) -> str:
    """The data dir's first API key, created on first use and kept in `api_key` (mode 0600)."""
    from .store import Store

    store = Store(data_dir / "sutro-local.db")
    path = data_dir / "api_key"
    if path.exists():
        key = path.read_text().strip()
        if store.resolve_key(key):
            return key
    key = store.create_key("default")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(key + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)
    return key


def _serve(args: argparse.Namespace) -> int:
    from .app import Settings, create_app
    from .config import load_config, with_model_file
    from .httpguard import run_server

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    config = load_config(args.config, default_engine=args.default_engine)
    if args.model_file:
        config = with_model_file(config, args.model_file, args.model_name)
    key = default_key(data_dir)
    # signed result URLs are built from this, never from a request's Host header
    local_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    public_url = args.public_url or config.public_url or f"http://{local_host}:{args.port}"
    app = create_app(Settings(data_dir=data_dir, config=config, public_url=public_url))
    url = f"http://{args.host}:{args.port}"
    _out(f"sutro-local serving at {url}")
    _out(f"API key: {key}")
    _out(f"data dir: {data_dir}   models: {', '.join(sorted(config.models))}")
    for model, choice in config.engine_choices.items():  # the default chat model: which engine, and why
        _out(f"{model} on the {choice.engine} engine: {choice.reason} "
             f"(--default-engine / SUTRO_LOCAL_DEFAULT_ENGINE: auto, llamacpp, transformers)")
    _out(f"try: SUTRO_API_URL={url} SUTRO_API_KEY={key}")
    _out(f"web console: {public_url.rstrip('/')}/console/jobs   (sign in with the API key)")
    run_server(app, config, host=args.host, port=args.port, log_level=args.log_level)  # + slow-client guards
    return 0


def _keys_create(args: argparse.Namespace) -> int:
    from .store import Store

    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    _out(Store(data_dir / "sutro-local.db").create_key(args.name))
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    from .store import Store

    db = Path(args.data_dir) / "sutro-local.db"
    if not db.is_file():
        _out(f"error: no sutro-local database in {args.data_dir} (pass --data-dir)")
        return 2
    keys = Store(db).list_keys()
    width = max([len(k["name"]) for k in keys] + [4])
    _out(f"{'NAME':<{width}}  {'CREATED':<24}  LAST USED")  # never the key: the store holds only its hash
    for k in keys:
        _out(f"{k['name']:<{width}}  {k['created_at']:<24}  {k['last_used_at'] or 'never'}")
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    from .store import Store

    db = Path(args.data_dir) / "sutro-local.db"
    gone = Store(db).revoke_keys(args.name) if db.is_file() else 0
    if not gone:
        _out(f"error: no key named {args.name!r} in {args.data_dir} (see `sutro-local keys list`)")
        return 1
    _out(f"revoked {gone} key(s) named {args.name!r}: their API calls and console sessions are refused now")
    return 0


def _functions_publish(args: argparse.Namespace) -> int:
    import yaml

    from .config import load_config
    from .state import ServerState
    from .store import GLOBAL_OWNER, hash_key

    data_dir = Path(args.data_dir).resolve()
    state = ServerState.open(data_dir, load_config(args.config))
    if args.shared:
        owner = GLOBAL_OWNER
    else:
        key = args.api_key or default_key(data_dir)
        if state.store.resolve_key(key) is None:
            _out(f"error: unknown --api-key for data dir {data_dir}")
            return 2
        owner = hash_key(key)
    for file in args.files:
        defn, rev = state.functions.publish(owner, yaml.safe_load(Path(file).read_text()))
        _out(f"published Function {defn.name!r} ({defn.type}) revision {rev}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `sutro-local`."""
    p = argparse.ArgumentParser(prog="sutro-local", description="A local Sutro-compatible batch inference server.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the server")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8484)
    s.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    s.add_argument("--config", default=None, help="YAML config (models, prices, quotas, functions_dir)")
    s.add_argument("--log-level", default="warning")
    s.add_argument("--public-url", default=None,
                   help="base URL clients reach this server at, for signed result URLs (config public_url; "
                        "default http://<host>:<port>)")
    s.add_argument("--model-file", default=None, metavar="PATH.gguf",
                   help="also serve this GGUF model file (llamacpp engine), e.g. an Ollama model blob")
    s.add_argument("--model-name", default=None, help="the --model-file's model name (default: the file's stem)")
    s.add_argument("--default-engine", default=None, choices=["auto", "llamacpp", "transformers"],
                   help="engine of the default chat model (and of `engine: auto` models): auto (default) picks "
                        "by the CPU, transformers where it has bfloat16 instructions, else llamacpp; "
                        "env SUTRO_LOCAL_DEFAULT_ENGINE")
    s.set_defaults(func=_serve)
    k = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_command", required=True)
    kc = k.add_parser("create", help="create an API key and print it")
    kc.add_argument("name")
    kc.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    kc.set_defaults(func=_keys_create)
    kl = k.add_parser("list", help="list API keys: name, created, last used (never the key)")
    kl.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    kl.set_defaults(func=_keys_list)
    kr = k.add_parser("revoke", help="revoke every key with this name; its console sessions end at once")
    kr.add_argument("name")
    kr.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    kr.set_defaults(func=_keys_revoke)
    f = sub.add_parser("functions", help="manage Functions").add_subparsers(dest="fn_command", required=True)
    fp = f.add_parser("publish", help="publish Function YAML file(s) for a key")
    fp.add_argument("files", nargs="+")
    fp.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    fp.add_argument("--config", default=None)
    fp.add_argument("--api-key", default=None, help="owner key (default: the data dir's first key)")
    fp.add_argument("--shared", action="store_true", help="publish for every key")
    fp.set_defaults(func=_functions_publish)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `sutro-local` console script."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Exception as exc:  # config / definition errors: one clear line, no traceback
        from .config import ConfigError
        from .functions import FunctionDefinitionError

        if isinstance(exc, (ConfigError, FunctionDefinitionError)):
            _out(f"error: {exc}")
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
