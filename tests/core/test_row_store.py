"""The row store: content keys, immutable parquet files, lookups that skip bad files, compaction, real processes."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
import warnings
from pathlib import Path

import fsspec
import polars as pl
import pytest

import sutro_core
from sutro_core import BatchJobRequest
from sutro_core.row_store import KEY, RowStore, RowStoreWarning, _new_name, main, request_identity, row_keys

CORE_DIR = str(Path(sutro_core.__file__).resolve().parent.parent)
IDENTITY = {"model": "qwen-3-4b", "system_prompt": "Classify", "json_schema": None, "sampling_params": None}


def value_of(key: str) -> str:
    """The result every writer stores for a key, so any wrong row shows."""
    return f"result of {key} " * 3


def frame(keys: list[str], **extra: list) -> pl.DataFrame:
    return pl.DataFrame({KEY: keys, "output": [value_of(k) for k in keys], **extra})


def keys_of(n: int, prefix: str = "") -> list[str]:
    return row_keys(IDENTITY, [f"{prefix}row {i}" for i in range(n)])


def run_python(code: str, *args: str, wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([CORE_DIR, os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-c", textwrap.dedent(code), *args]
    if wait:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=True)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def strict_warnings():
    """Any RowStoreWarning fails the test (a healthy store warns about nothing)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RowStoreWarning)
        yield


# ---------------------------------------------------------------------------------------------- keys


def test_keys_are_stable_across_processes_and_releases():
    req = BatchJobRequest.for_inference(["I love it"], model="qwen-3-4b", system_prompt="Classify",
                                        sampling_params={"temperature": 0.2})  # fmt: skip
    fn = BatchJobRequest.for_function("sentiment", [{"text": "I love it", "lang": "en"}])
    # Golden values: a change here makes every stored row unreachable; bump KEY_SCHEME deliberately instead.
    assert row_keys(request_identity(req), req.inputs) == ["55b89d53941928e25b2f838417638791"]
    assert row_keys(request_identity(fn), fn.inputs) == ["c36546bb9521810611ce835b12df693b"]
    out = run_python("""
        from sutro_core import BatchJobRequest
        from sutro_core.row_store import request_identity, row_keys
        req = BatchJobRequest.for_inference(["I love it"], model="qwen-3-4b", system_prompt="Classify",
                                            sampling_params={"temperature": 0.2})
        print(row_keys(request_identity(req), req.inputs.inline)[0])
    """)
    assert out.stdout.strip() == "55b89d53941928e25b2f838417638791"


def test_every_identity_field_changes_the_key_and_cosmetics_do_not():
    base = dict(data=["row"], model="qwen-3-4b", system_prompt="Classify", output_schema={"type": "object"},
                sampling_params={"temperature": 0.2})  # fmt: skip

    def key(revision=None, **changes):
        req = BatchJobRequest.for_inference(**{**base, **changes})
        return row_keys(request_identity(req, revision=revision), req.inputs)[0]

    k = key()
    changed = [key(model="qwen-3-8b"), key(system_prompt="Classify!"), key(output_schema={"type": "array"}),
               key(sampling_params={"temperature": 0.3}), key(sampling_params=None), key(random_seed_per_input=True),
               key(truncate_rows=False), key(revision=2), key(data=["row "])]  # fmt: skip
    assert k not in changed and len(set(changed)) == len(changed)
    assert key(job_priority=1) == key(name="renamed", description="other words") == key(dry_run=True) == k
    # sampling params are canonical JSON: their order does not matter
    swapped = {"top_p": 0.9, "temperature": 0.2}
    assert key(sampling_params={"temperature": 0.2, "top_p": 0.9}) == key(sampling_params=swapped)
    fn = BatchJobRequest.for_function("sentiment", [{"text": "row"}])
    assert row_keys(request_identity(fn), fn.inputs)[0] != k


def test_key_inputs_text_objects_and_refusals():
    a, b, c = row_keys(IDENTITY, pl.Series(["x", "x", "y"]))
    assert a == b != c and len(a) == 32
    assert row_keys(IDENTITY, [{"a": 1, "b": "t"}]) == row_keys(IDENTITY, [{"b": "t", "a": 1}])
    assert row_keys(IDENTITY, [{"a": 1}]) != row_keys(IDENTITY, [{"a": 1.0}]) != row_keys(IDENTITY, ['{"a":1}'])
    assert row_keys(IDENTITY, []) == []
    with pytest.raises(ValueError, match="URL"):
        row_keys(IDENTITY, BatchJobRequest.for_inference("https://x.test/rows.csv", "m", column="text").inputs)
    with pytest.raises(TypeError, match="row 1"):
        row_keys(IDENTITY, ["ok", 3])


# ---------------------------------------------------------------------------------------------- the store


def test_round_trip_subset_and_aligned_lookup(tmp_path, strict_warnings):
    store = RowStore(tmp_path / "rows")
    k = keys_of(10)
    first = store.append(frame(k[:6], finish_reason=["stop"] * 6))
    second = store.append(frame(k[6:], finish_reason=["length"] * 4))
    assert store.files() == sorted([first, second]) and first < second
    found = store.lookup([k[1], k[8], "0" * 32])
    assert sorted(found[KEY].to_list()) == sorted([k[1], k[8]])
    assert dict(zip(found[KEY], found["output"])) == {k[1]: value_of(k[1]), k[8]: value_of(k[8])}
    aligned = store.lookup([k[8], "0" * 32, k[1], k[8]], aligned=True)
    assert aligned[KEY].to_list() == [k[8], "0" * 32, k[1], k[8]]
    assert aligned["finish_reason"].to_list() == ["length", None, "stop", "length"]
    # a fresh instance (another step) reads the same
    assert RowStore(str(tmp_path / "rows")).lookup(k).height == 10


def test_empty_frames_and_empty_stores(tmp_path, strict_warnings):
    store = RowStore(tmp_path / "rows")
    assert store.lookup(keys_of(3)).columns == [KEY] and store.lookup(keys_of(3)).height == 0
    assert store.lookup(keys_of(2), aligned=True).height == 2
    assert store.append(frame([])) is None and store.files() == []
    with pytest.raises(ValueError, match=KEY):
        store.append(pl.DataFrame({"output": ["x"]}))
    with pytest.raises(ValueError, match="null"):
        store.append(pl.DataFrame({KEY: ["a", None], "output": ["x", "y"]}))


def test_a_key_stored_twice_reads_from_the_earliest_file(tmp_path, strict_warnings):
    store = RowStore(tmp_path / "rows")
    k = keys_of(3)
    store.append(pl.DataFrame({KEY: [k[0], k[1], k[0]], "output": ["first", "b", "dup in one frame"]}))
    store.append(pl.DataFrame({KEY: [k[0], k[2]], "output": ["second", "c"]}))
    for _ in range(3):
        found = store.lookup(k)
        assert found.height == 3 and dict(zip(found[KEY], found["output"]))[k[0]] == "first"


def test_earliest_copy_when_an_older_file_is_read_in_a_later_round(tmp_path, strict_warnings):
    # A merged file is named as old as its inputs, so a lookup may meet it after newer files (a later
    # round of listing); the copy kept is still the earliest file's, by name, not by reading order.
    folder = tmp_path / "rows"
    store = RowStore(folder)
    k = keys_of(3)
    stamp = lambda days: (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)).strftime("%Y%m%dT%H%M%S%fZ")
    oldest, middle, newest = _new_name(stamp(3)), _new_name(stamp(2)), _new_name(stamp(1))
    pl.DataFrame({KEY: [k[0]], "output": ["oldest"]}).write_parquet(folder / oldest)
    pl.DataFrame({KEY: [k[1], k[2]], "output": ["middle", "middle"]}).write_parquet(folder / middle)
    pl.DataFrame({KEY: [k[2], k[0]], "output": ["newest", "newest"]}).write_parquet(folder / newest)
    keys = pl.Series(KEY, k).to_frame().lazy()
    meta = dict(store._readable([oldest, middle, newest]))
    parts = store._collect([(middle, meta[middle]), (newest, meta[newest])], keys, [])
    parts += store._collect([(oldest, meta[oldest])], keys, [])
    found = store._merge(parts)
    assert dict(zip(found[KEY], found["output"])) == {k[0]: "oldest", k[1]: "middle", k[2]: "middle"}
    assert found.columns == [KEY, "output"]


def test_unreadable_files_are_skipped_with_a_warning_naming_them(tmp_path):
    folder = tmp_path / "rows"
    store = RowStore(folder)
    k = keys_of(4000)
    good = store.append(frame(k[:1000]))
    truncated = store.append(frame(k[1000:2000]))
    corrupt = store.append(frame(k[2000:3000]))
    (folder / truncated).write_bytes((folder / truncated).read_bytes()[:3000])
    raw = bytearray((folder / corrupt).read_bytes())  # data pages damaged, footer intact
    for i in range(100, len(raw) // 2):
        raw[i] = (raw[i] * 7 + 3) % 256
    (folder / corrupt).write_bytes(bytes(raw))
    not_parquet = _new_name()
    (folder / not_parquet).write_text("not parquet")
    no_key = _new_name()
    pl.DataFrame({"id": [1], "output": ["x"]}).write_parquet(folder / no_key)
    int_key = _new_name()
    pl.DataFrame({KEY: [1], "output": ["x"]}).write_parquet(folder / int_key)
    later = store.append(frame(k[3000:]))

    reader = RowStore(folder)
    with pytest.warns(RowStoreWarning) as caught:
        found = reader.lookup(k)
    messages = " ".join(str(w.message) for w in caught)
    for bad in (truncated, corrupt, not_parquet, no_key, int_key):
        assert bad in messages
    assert good not in messages and later not in messages
    assert sorted(found[KEY].to_list()) == sorted(k[:1000] + k[3000:])
    assert all(found["output"] == found[KEY].map_elements(value_of, return_dtype=pl.String))
    with warnings.catch_warnings():  # one warning per file and store instance, not one per lookup
        warnings.simplefilter("error", RowStoreWarning)
        assert reader.lookup(k).height == 2000
    assert set(RowStore(folder).info()["unreadable"]) >= {truncated, not_parquet, no_key, int_key}


def test_temp_and_foreign_names_are_never_read(tmp_path, strict_warnings):
    folder = tmp_path / "rows"
    store = RowStore(folder)
    k = keys_of(5)
    store.append(frame(k[:2]))
    frame(k[2:]).write_parquet(tmp_path / "other.parquet")
    half = (tmp_path / "other.parquet").read_bytes()
    (folder / f".tmp-{uuid.uuid4().hex}.part").write_bytes(half[: len(half) // 2])  # a writer mid-file
    (folder / "notes.parquet").write_bytes(half)  # not our name: ignored even though it is valid
    assert len(store.files()) == 1
    assert sorted(store.lookup(k)[KEY].to_list()) == sorted(k[:2])


def test_a_writer_killed_mid_write_leaves_no_visible_half_file(tmp_path, strict_warnings):
    folder = tmp_path / "rows"
    writer = """
        import sys, polars as pl
        from sutro_core.row_store import RowStore
        store = RowStore(sys.argv[1])
        df = pl.DataFrame({"sutro_row_key": [f"{i:032x}" for i in range(300_000)], "output": ["x" * 100] * 300_000})
        print("ready", flush=True)
        while True:
            store.append(df)
    """
    rounds = 0
    # Killed at different points of a write, until a kill has left a half-written temp file (1-3 of 3
    # rounds leave one, measured), 3 rounds at least, 8 at most.
    for delay in (0.05, 0.2, 0.45, 0.1, 0.3, 0.15, 0.35, 0.25):
        proc = run_python(writer, str(folder), wait=False)
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            proc.stdout.close()
            proc.stderr.close()
        rounds += 1
        if rounds >= 3 and list(folder.glob(".tmp-*.part")):
            break
    assert list(folder.glob(".tmp-*.part")), f"no kill landed mid-write in {rounds} rounds"
    store = RowStore(folder)
    for name in store.files():  # every visible file is whole
        assert pl.read_parquet(folder / name).height == 300_000
    assert store.files() and store.lookup([f"{i:032x}" for i in range(0, 300_000, 1000)]).height == 300


def test_concurrent_writer_processes_never_corrupt_the_store(tmp_path, strict_warnings):
    folder = tmp_path / "rows"
    RowStore(folder)
    writer = """
        import sys, random, polars as pl
        from sutro_core.row_store import RowStore
        store, rng = RowStore(sys.argv[1]), random.Random(int(sys.argv[2]))
        for _ in range(8):
            keys = [f"{rng.randrange(2000):032x}" for _ in range(500)]  # overlaps the other writers' keys
            store.append(pl.DataFrame({"sutro_row_key": keys, "output": [f"result of {k} " * 3 for k in keys]}))
    """
    procs = [run_python(writer, str(folder), str(seed), wait=False) for seed in range(4)]  # 4 processes x 8 rounds
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    store = RowStore(folder)
    assert len(store.files()) == 32
    found = store.lookup([f"{i:032x}" for i in range(2000)])
    assert found.height > 1500 and found[KEY].n_unique() == found.height
    assert all(found["output"] == found[KEY].map_elements(value_of, return_dtype=pl.String))


def test_compaction_merges_and_a_concurrent_reader_is_never_wrong(tmp_path, strict_warnings):
    folder = tmp_path / "rows"
    store = RowStore(folder)
    k = keys_of(3000)
    initial = {store.append(frame(k[i * 100:(i + 1) * 100])) for i in range(30)}
    churn = """
        import sys, time, polars as pl
        from sutro_core.row_store import RowStore
        store, n, end = RowStore(sys.argv[1]), 0, time.monotonic() + 3
        while time.monotonic() < end:  # new small files and compactions, as a busy store sees them
            for i in range(5):
                keys = [f"new {n} {i} {j}" for j in range(50)]
                store.append(pl.DataFrame({"sutro_row_key": keys, "output": [f"result of {x} " * 3 for x in keys]}))
            n += len(store.compact(target_rows=400))
        print(n)
    """
    proc = run_python(churn, str(folder), wait=False)
    lookups = wrong = short = 0
    reader = RowStore(folder)
    try:
        while proc.poll() is None:
            found = reader.lookup(k)
            lookups += 1
            wrong += int((found["output"] != found[KEY].map_elements(value_of, return_dtype=pl.String)).sum())
            short += int(found.height < len(k))
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert int(out) >= 3 and lookups >= 3, (out, lookups)
    assert wrong == 0
    assert short == 0  # a file removed under the reader: it lists again and finds the merged file
    assert reader.lookup(k).height == 3000 and not initial & set(reader.files())  # all 30 merged away


def test_compact_keeps_the_earliest_copy_and_the_cli_runs(tmp_path, strict_warnings):
    folder = tmp_path / "rows"
    store = RowStore(folder)
    k = keys_of(6)
    first = store.append(pl.DataFrame({KEY: k[:3], "output": ["a0", "a1", "a2"]}))
    store.append(pl.DataFrame({KEY: k[2:], "output": ["second", "b3", "b4", "b5"]}))
    big = store.append(pl.DataFrame({KEY: [f"{i:032x}" for i in range(50)], "output": ["x"] * 50}))
    written = store.compact(target_rows=20)
    assert len(written) == 1 and written[0][:22] == first[:22]  # named as old as its oldest input
    assert store.files() == sorted([written[0], big])
    merged = pl.read_parquet(folder / written[0])
    assert merged.height == 6 and dict(zip(merged[KEY], merged["output"]))[k[2]] == "a2"
    assert store.compact(target_rows=20) == []  # nothing small left to merge
    out = run_python("import sys; from sutro_core.row_store import main; sys.exit(main(sys.argv[1:]))",
                     "info", str(folder))  # fmt: skip
    assert '"rows": 56' in out.stdout and '"files": 2' in out.stdout
    assert main(["compact", str(folder), "--target-rows", "100"]) == 0
    assert len(store.files()) == 1 and store.lookup(k).height == 6


def test_schema_drift_between_jobs(tmp_path):
    folder = tmp_path / "rows"
    store = RowStore(folder)
    text = keys_of(4)
    vec = row_keys({**IDENTITY, "model": "all-minilm-l6-v2"}, ["a", "b"])
    store.append(frame(text[:2]))
    vectors = pl.Series("output", [[0.1, 0.2], [0.3, 0.4]], dtype=pl.List(pl.Float32))
    store.append(pl.DataFrame({KEY: vec, "output": vectors}))
    store.append(frame(text[2:], finish_reason=["stop", "length"]))  # a later release stores one more column
    with warnings.catch_warnings():
        warnings.simplefilter("error", RowStoreWarning)
        found = store.lookup(text, aligned=True)
        assert found["output"].to_list() == [value_of(x) for x in text]
        assert found["finish_reason"].to_list() == [None, None, "stop", "length"]
        got = store.lookup(vec, aligned=True)["output"].to_list()
        assert got == [pytest.approx([0.1, 0.2]), pytest.approx([0.3, 0.4])]
        assert store.compact(target_rows=100) == []  # one file per schema: nothing to merge
    with pytest.warns(RowStoreWarning, match="do not fit"):  # one lookup over clashing types: the earliest wins
        assert store.lookup(text[:1] + vec).height == 1


def test_prune_clear_and_stale_temp_files(tmp_path, strict_warnings):
    folder = tmp_path / "rows"
    store = RowStore(folder)
    k = keys_of(4)
    old = _new_name((dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=40)).strftime("%Y%m%dT%H%M%S%fZ"))
    frame(k[:2]).write_parquet(folder / old)
    new = store.append(frame(k[2:]))
    stale, live = folder / f".tmp-{uuid.uuid4().hex}.part", folder / f".tmp-{uuid.uuid4().hex}.part"
    stale.write_bytes(b"PAR1")
    live.write_bytes(b"PAR1")
    os.utime(stale, (time.time() - 2 * 86400,) * 2)
    assert store.lookup(k).height == 4
    assert sorted(store.prune(dt.timedelta(days=30))) == sorted([old, stale.name])
    assert store.files() == [new] and live.exists() and store.lookup(k).height == 2
    assert store.clear() == 1 and store.files() == [] and store.lookup(k).height == 0


def test_fsspec_and_file_uris(tmp_path):
    root = f"memory://row-store-test-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    try:
        store = RowStore(f"{root}/rows")
        k = keys_of(300)
        for i in range(3):
            store.append(frame(k[i * 100:(i + 1) * 100]))
        fs.pipe(f"{root}/rows/{_new_name()}", b"junk")
        fs.pipe(f"{root}/rows/.tmp-{uuid.uuid4().hex}.part", b"PAR1 half")
        with pytest.warns(RowStoreWarning, match="not a readable parquet"):
            assert RowStore(f"{root}/rows").lookup(k[50:250], aligned=True)["output"].to_list() == [
                value_of(x) for x in k[50:250]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RowStoreWarning)
            assert len(store.compact(target_rows=1000)) == 1
        assert len(store.files()) == 2 and store.lookup(k).height == 300  # the merged file + the junk one
    finally:
        fs.rm(root, recursive=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RowStoreWarning)
        uri_store = RowStore(f"file://{tmp_path}/rows")
        uri_store.append(frame(k[:5]))
        assert RowStore(tmp_path / "rows").lookup(k[:5]).height == 5
