import torch

from gdaload.bench.memo import MemoGenerator


def test_memo_generator_generates_each_pair_once(seed_generator) -> None:
    memo = MemoGenerator(seed_generator)
    first = memo.generate(torch.tensor([0, 1, 0]), [5, 6, 5])
    again = memo.generate([1, 2], [6, 7])
    assert memo.generated == 3
    torch.testing.assert_close(again[0], first[1])
    torch.testing.assert_close(first, seed_generator.generate([0, 1, 0], [5, 6, 5]))
    assert memo.generate([], []).shape == (0, 1, 4, 4)
