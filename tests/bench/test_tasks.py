import pytest

from gdaload.bench.tasks import get_task


@pytest.mark.reliability
def test_unknown_task_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown task 'cifar'; valid tasks are \['digits'\]"):
        get_task("cifar")
