"""Build a tiny random-weight Llama chat model on disk, for tests only.

No generative weights can be downloaded in this environment, so tests build a ~1 MB Llama with
random weights and a byte-level BPE tokenizer trained here on a little built-in text. It exercises
the real HF loading and generation path (``from_pretrained``, chat template, left padding,
``generate``); its outputs are gibberish. It is NOT a model to run real work with.

Example:
    >>> from support.tiny_llama import build_tiny_llama    # tests/ is on sys.path under pytest
    >>> path = build_tiny_llama(tmp_path / "tiny-llama")     # doctest: +SKIP
    >>> # then configure sutro-local: {"engine": "transformers", "path": str(path)}
"""

from __future__ import annotations

from pathlib import Path

# Plain chat template; the generation prompt ends with a newline after the assistant tag.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

SPECIAL_TOKENS = ["<unk>", "<s>", "<|system|>", "<|user|>", "<|assistant|>", "</s>", "<pad>"]
# Reasoning tags are ordinary added tokens (as in Qwen3): kept when decoding, one token each.
THINK_TOKENS = ["<think>", "</think>"]
# The reasoning variant's template opens the think block in the generation prompt (like DeepSeek-R1).
REASONING_CHAT_TEMPLATE = CHAT_TEMPLATE.replace(
    "<|assistant|>\n{% endif %}", "<|assistant|>\n<think>\n{% endif %}"
)

_CORPUS = """
Sutro runs batch inference over many rows of text at once and writes the results as parquet files.
A pipeline step submits a job, waits for it to finish, and downloads the outputs for the next step.
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.
Customers write tickets about billing, refunds, login problems, shipping delays and broken devices.
Please classify the sentiment of this review as positive, negative or neutral and explain why.
{"name": "Ada", "age": 36, "city": "London", "tags": ["math", "engines"], "active": true, "score": 0.5}
{"label": "positive", "confidence": 0.9, "rationale": "the customer is happy with the fast delivery"}
Extract the product, the price and the currency from the following sentence: I paid 20 dollars.
Summarise the document in one sentence. Translate the text to French. Answer yes or no.
0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 100 1000 true false null [ ] { } , : " '
"""


def _train_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Repeat the corpus so merges reach the requested vocabulary size quickly.
    tok.train_from_iterator([line for line in _CORPUS.splitlines() if line] * 20, trainer=trainer)
    return tok


def build_tiny_llama(
    path: str | Path,
    *,
    vocab_size: int = 1024,
    seed: int = 0,
    max_position_embeddings: int = 1024,
    reasoning: bool = False,
) -> Path:
    """Write a tiny random-weight Llama + BPE tokenizer with a chat template to ``path``.

    Takes a few seconds on CPU and about 1 MB of disk. For tests only: the weights are random.
    ``reasoning=True`` writes the same model with a chat template that opens ``<think>`` in the
    generation prompt, as reasoning models do.

    Example:
        >>> build_tiny_llama("/tmp/tiny-llama")   # doctest: +SKIP
        PosixPath('/tmp/tiny-llama')
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    raw = _train_tokenizer(vocab_size)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        padding_side="left",
    )
    tokenizer.add_tokens(THINK_TOKENS)
    tokenizer.chat_template = REASONING_CHAT_TEMPLATE if reasoning else CHAT_TEMPLATE
    tokenizer.save_pretrained(path)

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(path, safe_serialization=True)
    model.generation_config.save_pretrained(path)
    return path


def cached_tiny_llama(cache_dir: str | Path | None = None, *, reasoning: bool = False) -> Path:
    """The tiny Llama built once per machine (and builder version) under a cache folder.

    Test sessions of several people and processes share it: each build goes to a private temp
    folder that is renamed into place atomically, so a half-written model is never seen.
    Default folder: ``$SUTRO_TEST_CACHE`` or ``<tmp>/sutro-test-cache``.

    Example:
        >>> cached_tiny_llama()                                      # doctest: +SKIP
        PosixPath('/tmp/sutro-test-cache/tiny-llama-v1-...')
    """
    import hashlib
    import os
    import shutil
    import tempfile

    import transformers

    root = Path(
        cache_dir or os.environ.get("SUTRO_TEST_CACHE") or Path(tempfile.gettempdir()) / "sutro-test-cache"
    )
    stamp = hashlib.sha256(
        f"{CHAT_TEMPLATE}{_CORPUS}{transformers.__version__}v2-ctx1024".encode()
    ).hexdigest()[:10]
    final = root / f"tiny-llama{'-reasoning' if reasoning else ''}-{stamp}"
    if (final / "model.safetensors").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=root))
    try:
        build_tiny_llama(work / "model", reasoning=reasoning)
        try:
            os.rename(work / "model", final)
        except OSError:  # another process won the race: use its copy
            if not (final / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final
