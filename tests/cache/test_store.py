"""SampleStore: reuse across runs, damaged shards, foreign configs, caps and fallbacks."""

import errno
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from checkers import SeedImageGenerator, assert_pickle_round_trip
from torch.utils.data import DataLoader, TensorDataset

import gdaload.cache.folder as folder_module
import gdaload.cache.shards as shards_module
from gdaload import GenerativeDataset, GenerativeLoader
from gdaload.cache import SampleStore


def real_loader(n: int = 12, batch_size: int = 4) -> DataLoader:
    ds = TensorDataset(torch.zeros(n, 1, 4, 4), torch.tensor([i % 3 for i in range(n)]))
    return DataLoader(ds, batch_size=batch_size)


class CountingGenerator(SeedImageGenerator):
    def __init__(self, kind: str = "seed-image") -> None:
        super().__init__(3)
        self.kind, self.made, self.seeds = kind, 0, set()

    def generate(self, labels, seeds):
        self.made += len(seeds)
        self.seeds.update(int(seed) for seed in seeds)
        return super().generate(labels, seeds)

    @property
    def config(self):
        return {**super().config, "kind": self.kind}


def run(gen, store, engine: str = "thread", epochs: int = 1) -> torch.Tensor:
    loader = GenerativeLoader(
        real_loader(),
        gen,
        ratio=1.5,
        seed=4,
        return_mask=True,
        engine=engine,
        pool_size=8,
        generation_batch_size=3,
        store=store,
    )
    out = []
    with loader:
        for _ in range(epochs):
            out += [x[mask] for x, _, mask in loader]
    return torch.cat(out)


def shards(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.safetensors"))


@pytest.mark.parametrize("engine", ["sync", "thread"])
def test_second_run_reads_the_store_instead_of_generating(tmp_path: Path, engine: str) -> None:
    first_gen = CountingGenerator()
    first = run(first_gen, tmp_path, engine)
    assert first_gen.made >= 18 and len(shards(tmp_path)) >= 1  # the thread runs ahead
    again = CountingGenerator()
    loader_stats = GenerativeLoader(real_loader(), again, ratio=1.5, seed=4, store=tmp_path)
    list(loader_stats)
    assert again.made == 0
    assert loader_stats.stats()["cache_hits"] == 18 and loader_stats.stats()["cache_misses"] == 0
    assert torch.equal(run(CountingGenerator(), tmp_path, engine), first)  # bit-identical


def test_get_put_hit_miss_and_no_temporary_files(tmp_path: Path) -> None:
    gen = SeedImageGenerator(3)
    store = SampleStore.for_generator(tmp_path, gen)
    images = gen.generate([0, 1], [10, 11])
    store.put([0, 1], [10, 11], images)
    got = store.get([1, 0, 2], [11, 10, 10])
    assert torch.equal(got[0], images[1]) and torch.equal(got[1], images[0]) and got[2] is None
    assert store.stats()["hits"] == 2 and store.stats()["misses"] == 1
    assert (1, 11) in store and len(store) == 2
    assert not list(tmp_path.rglob("*.tmp"))
    reopened = assert_pickle_round_trip(store)  # as DataLoader workers get it
    assert torch.equal(reopened.get([0], [10])[0], images[0])


def test_fetch_copies_stored_rows_into_the_batch_and_lists_the_rest(tmp_path: Path) -> None:
    gen = SeedImageGenerator(3)
    store = SampleStore.for_generator(tmp_path, gen, cache_bytes=0)
    store.put([0, 1, 2], [10, 11, 12], gen.generate([0, 1, 2], [10, 11, 12]))
    store.put([0], [13], gen.generate([0], [13]))
    labels, seeds = [0, 1, 2, 1, 0, 0], [10, 11, 12, 99, 13, 10]
    out = torch.full((6, *gen.image_shape), -1.0)
    assert store.fetch(labels, seeds, out) == [3]  # the one pair never stored
    expected = gen.generate(labels, seeds)
    for row in (0, 1, 2, 4, 5):  # a consecutive run, a second shard, a repeated key
        assert torch.equal(out[row], expected[row])
    assert (out[3] == -1).all()  # a missing row is left for the generator


@pytest.mark.reliability
def test_a_shard_is_verified_once_per_process_until_it_changes(tmp_path: Path, monkeypatch) -> None:
    checks = []
    real_checksum = shards_module.tensor_checksum
    monkeypatch.setattr(
        shards_module, "tensor_checksum", lambda tensors: checks.append(1) or real_checksum(tensors)
    )
    gen = SeedImageGenerator(3)
    store = SampleStore.for_generator(tmp_path, gen, cache_bytes=0)  # every get reads the file
    images = gen.generate([0, 1], [1, 2])
    store.put([0, 1], [1, 2], images)
    writes = len(checks)
    for _ in range(3):
        assert torch.equal(store.get([1], [2])[0], images[1])
    assert len(checks) - writes == 1
    path = shards(tmp_path)[0]
    data = bytearray(path.read_bytes())
    data[int.from_bytes(data[:8], "little") + 8 + 4] ^= 0x01
    stat = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # coarse clocks too
    with pytest.warns(RuntimeWarning, match="fails its checksum"):
        assert store.get([1], [2]) == [None]


@pytest.mark.reliability
@pytest.mark.parametrize("damage", ["truncate", "flip-data", "flip-header", "empty"])
def test_damaged_shard_is_dropped_and_regenerated(tmp_path: Path, damage: str) -> None:
    first = run(CountingGenerator(), tmp_path)
    victim, *others = shards(tmp_path)
    victim_seeds = set(shards_module.read_shard(victim)[0]["seeds"].tolist())
    intact = {s for path in others for s in shards_module.read_shard(path)[0]["seeds"].tolist()}
    data = bytearray(victim.read_bytes())
    if damage == "truncate":
        data = data[: len(data) - 7]
    elif damage == "flip-data":
        data[-5] ^= 0xFF  # inside the last tensor's bytes: only the checksum notices
    elif damage == "flip-header":
        data[10] ^= 0xFF
    else:
        data = bytearray()
    victim.write_bytes(bytes(data))
    gen = CountingGenerator()
    with pytest.warns(RuntimeWarning, match="dropping damaged"):
        again = run(gen, tmp_path)
    assert torch.equal(again, first)  # regenerated, never served damaged
    assert victim_seeds <= gen.seeds and not intact & gen.seeds  # only the damaged ones
    assert not victim.exists() or victim.read_bytes() != bytes(data)


@pytest.mark.reliability
def test_flipped_image_byte_fails_the_checksum(tmp_path: Path) -> None:
    gen = SeedImageGenerator(3)
    store = SampleStore.for_generator(tmp_path, gen, cache_bytes=0)
    images = gen.generate([0, 1, 2], [1, 2, 3])
    store.put([0, 1, 2], [1, 2, 3], images)
    path = shards(tmp_path)[0]
    data = bytearray(path.read_bytes())
    # The images tensor's bytes come right after the header; flip one in the middle.
    header = int.from_bytes(data[:8], "little") + 8
    data[header + images.numel() * 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="fails its checksum"):
        assert store.get([1], [2]) == [None]
    assert not path.exists()


@pytest.mark.reliability
def test_samples_of_another_config_are_never_served(tmp_path: Path) -> None:
    run(CountingGenerator("a"), tmp_path)
    other = CountingGenerator("b")
    assert other.config_hash() != CountingGenerator("a").config_hash()
    run(other, tmp_path, "sync")
    assert other.made == 18  # same labels and seeds, different config: all generated
    # A shard moved into another config's folder is ignored, not served.
    a_store = SampleStore.for_generator(tmp_path, CountingGenerator("a"))
    b_folder = SampleStore.for_generator(tmp_path, CountingGenerator("b")).folder
    for path in shards(a_store.folder):
        path.rename(b_folder / ("moved-" + path.name))
    for path in shards(b_folder):
        if not path.name.startswith("moved-"):
            path.unlink()
    third = CountingGenerator("b")
    run(third, tmp_path, "sync")
    assert third.made == 18
    with pytest.raises(ValueError, match="another|holds samples of generator config"):
        GenerativeLoader(real_loader(), CountingGenerator("b"), store=a_store)


def test_size_cap_evicts_oldest_shards(tmp_path: Path) -> None:
    gen = SeedImageGenerator(3, (1, 8, 8))
    store = SampleStore.for_generator(tmp_path, gen, max_bytes=3000)
    for seed in range(10):
        store.put([0], [seed], gen.generate([0], [seed]))
    assert sum(p.stat().st_size for p in shards(tmp_path)) <= 3000
    found = store.get([0] * 10, list(range(10)))
    assert found[-1] is not None and found[0] is None  # newest kept, oldest evicted
    assert store.stats()["bytes"] <= 3000


@pytest.mark.reliability
def test_unwritable_folder_warns_and_keeps_every_batch(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    reference = run(CountingGenerator(), None, engine="sync")
    gen = CountingGenerator()
    with pytest.warns(RuntimeWarning, match="keeping generated samples in memory"):
        store = SampleStore.for_generator(blocker / "cache", gen)
    assert store.memory_only
    assert torch.equal(run(gen, store, epochs=1), reference)
    assert len(store) >= 18  # kept in memory: a replay of the epoch hits
    again = CountingGenerator()
    assert torch.equal(run(again, store, "sync"), reference) and again.made == 0


@pytest.mark.reliability
def test_disk_full_mid_run_falls_back_to_memory(tmp_path: Path, monkeypatch) -> None:
    reference = run(CountingGenerator(), None, engine="sync")
    calls = []

    def full_disk(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(*args, **kwargs)

    real_write = folder_module.write_shard
    monkeypatch.setattr(folder_module, "write_shard", full_disk)
    with pytest.warns(RuntimeWarning, match="No space left"):
        got = run(CountingGenerator(), tmp_path)
    assert torch.equal(got, reference)  # no batch lost
    assert len(shards(tmp_path)) == 1 and not list(tmp_path.rglob("*.tmp"))


@pytest.mark.reliability
def test_interrupted_write_leaves_no_partial_shard(tmp_path: Path, monkeypatch) -> None:
    import gdaload.cache.shards as shards_module

    def crash(tensors, path, metadata):
        Path(path).write_bytes(b"half a shard")
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(shards_module, "save_file", crash)
    gen = SeedImageGenerator(3)
    store = SampleStore.for_generator(tmp_path, gen)
    with pytest.warns(RuntimeWarning, match="I/O error"):
        store.put([0], [1], gen.generate([0], [1]))
    assert not shards(tmp_path) and not list(tmp_path.rglob("*.tmp"))
    assert store.get([0], [1])[0] is not None  # kept in memory instead


def test_dataset_store_lets_workers_only_read(tmp_path: Path) -> None:
    class CudaReportingGenerator(SeedImageGenerator):
        where = "cpu"  # where the images it makes are; "cuda" once the store is full

        @property
        def device(self) -> torch.device:
            return torch.device(self.where)  # a CUDA generate() is refused in a worker

    real = TensorDataset(torch.zeros(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2]))
    gen = CudaReportingGenerator()
    ds = GenerativeDataset(real, gen, ratio=1.0, seed=3, store=tmp_path)
    assert ds.fill_store(progress=False) == 6
    assert ds.fill_store(progress=False) == 0  # already stored
    gen.where = "cuda"
    loaded = torch.cat([x for x, _ in DataLoader(ds, batch_size=3, num_workers=2)])
    expected = SeedImageGenerator(3).generate(
        ds.synthetic_labels(), [ds.plan.sample_seed(0, j) for j in range(6)]
    )
    assert torch.equal(loaded[6:], expected)
    with pytest.raises(ValueError, match="needs a store"):
        GenerativeDataset(real, SeedImageGenerator(3), ratio=1.0).fill_store()


def test_for_generator_needs_only_a_config_and_its_hash(tmp_path: Path) -> None:
    class Configured:  # no gdaload.Generator: the store reads config and config_hash only
        config = {"kind": "plain"}

        def config_hash(self) -> str:
            return "0123abcd"

    store = SampleStore.for_generator(tmp_path, Configured())
    assert store.config_hash == "0123abcd"
    assert (tmp_path / "0123abcd" / "config.json").read_text() == '{"kind": "plain"}'


@pytest.mark.reliability
def test_memory_fallback_drops_the_samples_written_first(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    gen = SeedImageGenerator(3)
    with pytest.warns(RuntimeWarning, match="keeping generated samples in memory"):
        store = SampleStore.for_generator(blocker / "cache", gen, memory_bytes=3 * 64)
    for seed in range(3):
        store.put([0], [seed], gen.generate([0], [seed]))
    assert store.get([0], [0])[0] is not None  # a read does not make a sample younger
    store.put([0, 0], [3, 3], gen.generate([0, 0], [3, 3]))  # a repeated key counts once
    assert [key in store for key in [(0, 0), (0, 1), (0, 2), (0, 3)]] == [False, True, True, True]
    assert len(store) == 3


def test_the_cache_layer_imports_no_later_layer() -> None:
    from import_graph import imports_of

    import gdaload.cache as cache_package

    allowed = ("gdaload.cache", "gdaload.fingerprint", "gdaload.seeding")
    for path in Path(cache_package.__file__).parent.glob("*.py"):
        for imp in imports_of(path):
            assert imp.target.startswith(allowed), f"{path.name} imports {imp.target}"


FILE_SIZE_LIMIT_RUN = """
import json, resource, sys, warnings
sys.path.insert(0, {tests!r})
import torch
from test_store import CountingGenerator, run

engine, folder = sys.argv[1], sys.argv[2]
reference = run(CountingGenerator(), None, engine="sync")
# Writes past 300 bytes now fail with EFBIG ("File too large"), as on a full disk; Python
# ignores SIGXFSZ, so the write call reports the error instead of killing the process.
resource.setrlimit(resource.RLIMIT_FSIZE, (300, 300))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    got = run(CountingGenerator(), folder, engine=engine)
print(json.dumps({{"same": bool(torch.equal(got, reference)),
                  "warnings": [str(w.message) for w in caught]}}))
"""


@pytest.mark.reliability
@pytest.mark.parametrize("engine", ["sync", "thread"])
def test_a_real_file_size_limit_falls_back_to_memory(tmp_path: Path, engine: str) -> None:
    import json
    import subprocess
    import sys

    script = FILE_SIZE_LIMIT_RUN.format(tests=str(Path(__file__).parent))
    parent = str(Path(__file__).parents[1])
    out = subprocess.run(
        [sys.executable, "-c", script, engine, str(tmp_path / "store")],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([parent, os.environ.get("PYTHONPATH", "")]),
        },
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["same"]  # every batch served, no sample lost
    fallbacks = [w for w in result["warnings"] if "keeping generated samples in memory" in w]
    assert len(fallbacks) == 1 and "File too large" in fallbacks[0]
    assert not list((tmp_path / "store").rglob("*.tmp"))


@pytest.mark.reliability
@pytest.mark.parametrize("engine", ["sync", "thread"])
def test_store_folder_removed_mid_epoch_falls_back_to_memory(tmp_path: Path, engine: str) -> None:
    import shutil

    reference = run(CountingGenerator(), None, engine="sync")

    class RemovingGenerator(CountingGenerator):
        def generate(self, labels, seeds):
            if self.made:  # after the first block: the folder disappears under the run
                shutil.rmtree(tmp_path / "store", ignore_errors=True)
            return super().generate(labels, seeds)

    with pytest.warns(RuntimeWarning, match="keeping generated samples in memory") as caught:
        got = run(RemovingGenerator(), tmp_path / "store", engine=engine)
    assert torch.equal(got, reference)
    assert len([w for w in caught if "in memory" in str(w.message)]) == 1


@pytest.mark.reliability
def test_safetensors_write_errors_are_reported_as_os_errors(tmp_path: Path, monkeypatch) -> None:
    from safetensors import SafetensorError

    def failing(tensors, path, metadata):
        raise SafetensorError("Error while serializing: IoError(File too large)")

    monkeypatch.setattr(shards_module, "save_file", failing)
    with pytest.raises(OSError, match="File too large"):
        shards_module.write_shard(tmp_path / "a.safetensors", {"x": torch.zeros(2)}, {})
    assert not list(tmp_path.iterdir())


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (torch.rand(3, 1, 2, 2), "its images are \\(1, 2, 2\\), not the requested \\(1, 4, 4\\)"),
        (torch.randint(0, 255, (3, 1, 4, 4), dtype=torch.uint8), "not float"),
        (torch.rand(3, 1, 4, 4) * 2 - 1, "not \\[0, 1\\]"),
        (torch.full((3, 1, 4, 4), float("nan")), "NaN or Inf"),
    ],
    ids=["shape", "dtype", "range", "nan"],
)
def test_stored_images_that_break_the_contract_are_dropped(
    tmp_path: Path, bad: torch.Tensor, reason: str
) -> None:
    # A shard with a valid checksum and the right config hash, holding images no
    # generator could have returned: it must never reach a batch.
    gen = SeedImageGenerator(3)
    SampleStore.for_generator(tmp_path, gen).put(
        [0, 1, 2], [1, 2, 3], gen.generate([0, 1, 2], [1, 2, 3])
    )
    shard = shards(tmp_path)[0]
    tensors, meta = shards_module.read_shard(shard)
    meta = {k: v for k, v in meta.items() if k not in ("format", "checksum")}
    shards_module.write_shard(shard, {**tensors, "images": bad}, meta)  # a fresh checksum
    reader = SampleStore.for_generator(tmp_path, gen)
    out = torch.zeros(3, 1, 4, 4)
    with pytest.warns(RuntimeWarning, match=f"dropping damaged.*{reason}"):
        missing = reader.fetch([0, 1, 2], [1, 2, 3], out)
    assert missing == [0, 1, 2] and not out.any() and not shards(tmp_path)


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        ({"seeds": torch.tensor([1, 2])}, "3 labels but 2 seeds"),
        (
            {"labels": torch.tensor([[0], [1], [2]]), "seeds": torch.tensor([[1], [2], [3]])},
            "not integers \\(N,\\)",
        ),
        ({"labels": torch.tensor([0.0, 1.0, 2.0])}, "labels are torch.float32"),
        ({"labels": torch.tensor([0, 1, 2, 0]), "seeds": torch.tensor([1, 2, 3, 4])}, "count"),
    ],
    ids=["short-seeds", "2d-keys", "float-labels", "more-keys-than-images"],
)
def test_crafted_keys_with_a_valid_checksum_are_dropped(
    tmp_path: Path, keys: dict[str, torch.Tensor], reason: str
) -> None:
    # A shard with a valid checksum and the right config hash whose keys do not describe
    # its images: opening the store drops it instead of failing, and nothing of it is served.
    gen = SeedImageGenerator(3)
    SampleStore.for_generator(tmp_path, gen).put(
        [0, 1, 2], [1, 2, 3], gen.generate([0, 1, 2], [1, 2, 3])
    )
    shard = shards(tmp_path)[0]
    tensors, meta = shards_module.read_shard(shard)
    meta = {k: v for k, v in meta.items() if k not in ("format", "checksum")}
    shards_module.write_shard(shard, {**tensors, **keys}, meta)  # a fresh checksum
    with pytest.warns(RuntimeWarning, match=f"dropping damaged.*{reason}"):
        reader = SampleStore.for_generator(tmp_path, gen)
        assert reader.get([0, 1, 2, 0], [1, 2, 3, 4]) == [None] * 4
    assert not shards(tmp_path)
    reader.put([0], [1], gen.generate([0], [1]))  # the store keeps working
    assert torch.equal(reader.get([0], [1])[0], gen.generate([0], [1])[0])


def run_script(script: str, *args: str, wait: bool = True) -> Any:
    """Run ``script`` in a fresh Python that imports this module (as a child process)."""
    import subprocess
    import sys

    parent = str(Path(__file__).parents[1])
    command = [sys.executable, "-c", script.format(tests=str(Path(__file__).parent)), *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([parent, os.environ.get("PYTHONPATH", "")])}
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


KILLED_MID_WRITE_RUN = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import gdaload.cache.shards as shards_module
from test_store import CountingGenerator, run

real_save, written = shards_module.save_file, []

def save_then_die(tensors, path, metadata):
    real_save(tensors, path, metadata)
    written.append(path)
    if len(written) == 3:  # the third shard: half of it is on disk, not yet renamed
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        os.kill(os.getpid(), signal.SIGKILL)

shards_module.save_file = save_then_die
run(CountingGenerator(), sys.argv[1], engine=sys.argv[2])
"""


@pytest.mark.reliability
@pytest.mark.parametrize("engine", ["sync", "thread"])
def test_sigkill_during_a_shard_write_leaves_a_store_that_serves_correctly(
    tmp_path: Path, engine: str
) -> None:
    import signal

    out = run_script(KILLED_MID_WRITE_RUN, str(tmp_path), engine)
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert len(shards(tmp_path)) == 2  # the two shards written before the kill
    assert len(list(tmp_path.rglob("*.tmp"))) == 1  # the half-written one, never renamed
    stored = {
        seed
        for path in shards(tmp_path)
        for seed in shards_module.read_shard(path)[0]["seeds"].tolist()
    }
    reference = run(CountingGenerator(), None, engine="sync")
    gen = CountingGenerator()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no shard is reported damaged: none is
        got = run(gen, tmp_path, engine)
    assert torch.equal(got, reference)
    # What the killed run stored is read back, never generated again. (How many samples
    # are made depends on timing: the thread engine runs ahead into the next epoch.)
    assert len(stored) >= 6 and gen.made > 0 and not stored & gen.seeds
    for path in shards(tmp_path):
        shards_module.read_shard(path)  # every shard on disk is whole and verifies


CONCURRENT_WRITER_RUN = """
import json, os, sys, time, warnings
sys.path.insert(0, {tests!r})
import torch
from gdaload.cache import SampleStore
from test_store import CountingGenerator, run

folder, max_bytes = sys.argv[1], sys.argv[2]

class RefreshingGenerator(CountingGenerator):
    def generate(self, labels, seeds):
        store.refresh()  # re-read the folder as the other process writes and evicts in it
        return super().generate(labels, seeds)

reference = run(CountingGenerator(), None, engine="sync", epochs=3)
gen = RefreshingGenerator()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    store = SampleStore.for_generator(
        folder, gen, max_bytes=None if max_bytes == "none" else int(max_bytes), cache_bytes=0
    )
    # Both processes write from here on.
    open(os.path.join(folder, f"ready-{{os.getpid()}}"), "w").close()
    while sum(name.startswith("ready-") for name in os.listdir(folder)) < 2:
        time.sleep(0.002)
    got = run(gen, store, epochs=3)
print(json.dumps({{"same": bool(torch.equal(got, reference)), "made": gen.made,
                  "hits": store.stats()["hits"], "warnings": [str(w.message) for w in caught]}}))
"""


@pytest.mark.reliability
@pytest.mark.parametrize("max_bytes", ["none", "1500"], ids=["no-cap", "cap-evicts"])
def test_two_processes_writing_one_store_both_serve_correct_samples(
    tmp_path: Path, max_bytes: str
) -> None:
    import json

    children = [
        run_script(CONCURRENT_WRITER_RUN, str(tmp_path), max_bytes, wait=False) for _ in range(2)
    ]
    results = []
    for child in children:
        stdout, stderr = child.communicate(timeout=300)
        assert child.returncode == 0, stderr.decode()
        results.append(json.loads(stdout.decode().strip().splitlines()[-1]))
    for result in results:
        assert result["same"]  # every batch holds the planned samples, bit for bit
        assert not result["warnings"]  # no shard of the other process looks damaged
        assert result["made"] + result["hits"] >= 54  # evicted under it: generated again
    assert not list(tmp_path.rglob("*.tmp"))
    # A third run over the folder: whatever is stored verifies and is served correctly.
    reference = run(CountingGenerator(), None, engine="sync", epochs=3)
    gen = CountingGenerator()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = run(gen, tmp_path, epochs=3)
    assert torch.equal(got, reference)
    if max_bytes == "none":
        assert gen.made == 0  # all 54 samples are stored, by one process or both


def test_a_store_of_masks_keeps_integer_labels_exactly(tmp_path) -> None:
    images = SampleStore(tmp_path, "abc123")
    masks = images.masks_for()
    labels = torch.arange(3 * 64).reshape(3, 8, 8) * 1_000_003  # beyond float32's exact range
    masks.put([0, 1, 2], [5, 6, 7], labels)
    out = torch.empty(3, 8, 8, dtype=torch.int64)
    assert SampleStore(tmp_path, "abc123").masks_for().fetch([0, 1, 2], [5, 6, 7], out) == []
    assert torch.equal(out, labels)
    assert masks.folder != images.folder and len(images) == 0


@pytest.mark.reliability
def test_unknown_store_content_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown store content 'labels'"):
        SampleStore(tmp_path, "abc123", content="labels")
