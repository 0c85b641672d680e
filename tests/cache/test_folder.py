"""ShardFolder: the index of one config's shards, verified reads, the decoded-shard LRU
and eviction under the root's size cap."""

from pathlib import Path

import pytest
import torch

import gdaload.cache.folder as folder_module
from gdaload.cache.folder import ShardFolder


def images(n: int, value: float = 0.5) -> torch.Tensor:
    return torch.full((n, 1, 2, 2), value)


def test_written_shards_are_indexed_and_read_back(tmp_path: Path) -> None:
    folder = ShardFolder(tmp_path, "abc", cache_bytes=0)
    assert not folder.record_config({"kind": "x"})
    folder.write([(0, 1), (1, 2)], images(2), max_bytes=None)
    name, row = folder.locate((1, 2))
    assert row == 1 and folder.locate((5, 5)) is None
    assert (0, 1) in folder and len(folder) == 2 and folder.num_shards == 1
    assert torch.equal(folder.load(name), images(2))
    again = ShardFolder(tmp_path, "abc", cache_bytes=0)
    again.scan()
    assert again.scanned and again.locate((1, 2)) == (name, 1)
    assert again.num_bytes == (tmp_path / "abc" / name).stat().st_size
    assert ShardFolder(tmp_path, "abc", 0).record_config({"kind": "y"})  # another config


def test_decoded_shards_are_kept_up_to_cache_bytes(tmp_path: Path, monkeypatch) -> None:
    reads = []
    real_read = folder_module.read_shard
    monkeypatch.setattr(folder_module, "read_shard", lambda p: reads.append(p) or real_read(p))
    writer = ShardFolder(tmp_path, "abc", cache_bytes=0)
    writer.record_config(None)
    for seed in range(3):
        writer.write([(0, seed)], images(1, seed / 4), max_bytes=None)
    folder = ShardFolder(tmp_path, "abc", cache_bytes=2 * 16)  # two decoded shards
    folder.scan()
    names = [folder.locate((0, seed))[0] for seed in range(3)]
    for name in (names[0], names[1], names[0], names[2], names[0], names[1]):
        folder.load(name)
    # names[1] was the least recently read when names[2] came in: read again at the end.
    assert [Path(p).name for p in reads] == [names[0], names[1], names[2], names[1]]


def test_eviction_deletes_the_oldest_shards_of_any_config(tmp_path: Path) -> None:
    other = ShardFolder(tmp_path, "other", cache_bytes=0)
    other.record_config(None)
    other.write([(0, 0)], images(1), max_bytes=None)
    folder = ShardFolder(tmp_path, "abc", cache_bytes=1 << 20)
    folder.record_config(None)
    folder.scan()
    size = other.num_bytes
    for seed in range(1, 4):
        folder.write([(0, seed)], images(1), max_bytes=2 * size)
    assert not list((tmp_path / "other").glob("*.safetensors"))
    assert [key in folder for key in [(0, 1), (0, 2), (0, 3)]] == [False, True, True]
    assert len(list(tmp_path.rglob("*.safetensors"))) == 2


@pytest.mark.reliability
def test_a_damaged_shard_is_deleted_and_forgotten(tmp_path: Path) -> None:
    folder = ShardFolder(tmp_path, "abc", cache_bytes=0)
    folder.record_config(None)
    folder.write([(0, 1)], images(1), max_bytes=None)
    name, _ = folder.locate((0, 1))
    path = tmp_path / "abc" / name
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.warns(RuntimeWarning, match="dropping damaged sample-store shard"):
        assert folder.load(name) is None
    assert not path.exists() and (0, 1) not in folder and folder.num_shards == 0


@pytest.mark.reliability
def test_shards_evicted_by_another_process_during_a_scan_are_skipped(
    tmp_path: Path, monkeypatch
) -> None:
    import warnings

    writer = ShardFolder(tmp_path, "abc", cache_bytes=0)
    writer.record_config(None)
    for seed in range(3):
        writer.write([(0, seed)], images(1), max_bytes=None)
    paths = sorted((tmp_path / "abc").glob("*.safetensors"))
    real_open, real_all = folder_module.safe_open, ShardFolder._all_shards

    def listed_then_evicted(self):  # a shard listed for the size total, gone when read
        found = real_all(self)
        paths[0].unlink()
        return found

    def evicted_before_read(name, **kwargs):  # another shard goes between stat and read
        if name == str(paths[1]):
            paths[1].unlink()
        return real_open(name, **kwargs)

    monkeypatch.setattr(ShardFolder, "_all_shards", listed_then_evicted)
    monkeypatch.setattr(folder_module, "safe_open", evicted_before_read)
    folder = ShardFolder(tmp_path, "abc", cache_bytes=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a shard that is gone is not reported as damaged
        folder.scan()
    assert [key in folder for key in [(0, 0), (0, 1), (0, 2)]] == [False, False, True]
    assert folder.num_shards == 1 and paths[2].exists()
