import json

import numpy as np
import pytest
import torch
from checkers import SeedImageGenerator, served
from torch.utils.data import DataLoader, TensorDataset

from gdaload import GenerativeDataset, GenerativeLoader
from gdaload.data.feedback import check_feedback, smoothed_error
from gdaload.data.policies import synthetic_counts
from gdaload.data.resume import STATE_VERSION

# Class 2 is the minority: 2 real samples against 10.
LABELS = [0] * 10 + [1] * 10 + [2] * 2


def real_loader() -> DataLoader:
    ds = TensorDataset(torch.zeros(len(LABELS), 1, 4, 4), torch.tensor(LABELS))
    return DataLoader(ds, batch_size=4)


def feedback_loader(**kwargs) -> GenerativeLoader:
    return GenerativeLoader(
        real_loader(),
        SeedImageGenerator(3),
        ratio=1.0,
        class_policy="feedback",
        return_mask=True,
        **kwargs,
    )


def test_without_feedback_the_policy_is_balance() -> None:
    assert synthetic_counts("feedback", [10, 10, 2], 22).tolist() == (
        synthetic_counts("balance", [10, 10, 2], 22).tolist()
    )


def test_counts_follow_the_rule_and_stay_exact() -> None:
    # balance of 22 over (10, 10, 2): (3, 3, 16); error shares (0.8, 0, 0.2);
    # 0.1 * 1/3 + 0.9 * (0.5 * balance/22 + 0.5 * error) per class, rounded.
    counts = synthetic_counts("feedback", [10, 10, 2], 22, error=(0.4, 0.0, 0.1))
    share = 0.1 / 3 + 0.9 * (0.5 * np.array([3, 3, 16]) / 22 + 0.5 * np.array([0.8, 0, 0.2]))
    assert counts.sum() == 22
    assert np.abs(counts - share * 22).max() < 1


def test_error_is_smoothed_over_the_history() -> None:
    history = ((1, (1.0, 0.0)), (2, (0.0, 0.0)), (5, (0.0, 1.0)))
    assert smoothed_error(history, 0) is None
    assert smoothed_error(history, 1) == (1.0, 0.0)
    assert smoothed_error(history, 4) == (0.5, 0.0)
    assert smoothed_error(history, 9) == (0.25, 0.5)


def test_feedback_moves_the_next_epoch_to_the_failing_class() -> None:
    loader = feedback_loader()
    before = loader.synthetic_class_counts(0)
    served(loader)
    loader.feedback([0.2, 1.0, 1.0])  # class 0 is failing now
    after = loader.synthetic_class_counts(1)
    assert before.sum() == after.sum() == len(LABELS)
    assert after[0] > before[0]
    assert np.bincount(served(loader)[1].numpy(), minlength=3).tolist() == after.tolist()
    # Epoch 0's plan is unchanged by feedback given for epoch 1.
    assert loader.synthetic_class_counts(0).tolist() == before.tolist()


def test_thread_engine_drops_samples_made_ahead_of_feedback() -> None:
    sync, thread = feedback_loader(), feedback_loader(engine="thread", pool_size=64)
    recalls = ([0.2, 1.0, 1.0], [1.0, 0.0, 0.5])
    try:
        for epoch in range(3):
            a, b = served(sync), served(thread)
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), epoch
            if epoch < len(recalls):
                sync.feedback(recalls[epoch])
                thread.feedback(recalls[epoch])
        assert thread.stats()["dropped"] > 0
    finally:
        thread.close()


def test_resume_restores_the_feedback_history() -> None:
    loader = feedback_loader()
    served(loader)
    loader.feedback([0.0, 1.0, 1.0])
    state = json.loads(json.dumps(loader.state_dict()))
    assert state["version"] == STATE_VERSION and state["feedback"][0][0] == 1
    expected = served(loader)
    again = feedback_loader()
    again.load_state_dict(state)
    got = served(again)
    assert torch.equal(expected[0], got[0]) and torch.equal(expected[1], got[1])


def test_a_version_2_state_loads_without_feedback() -> None:
    loader = feedback_loader()
    loader.load_state_dict(
        {"version": 2, "kind": "GenerativeLoader", "epoch": 1, "seed": 0, "ratio": 1.0}
    )
    assert loader.epoch == 1 and loader.spec.feedback == ()


def test_dataset_takes_feedback_for_the_next_epoch() -> None:
    ds = GenerativeDataset(
        TensorDataset(torch.zeros(len(LABELS), 1, 4, 4), torch.tensor(LABELS)),
        SeedImageGenerator(3),
        ratio=1.0,
        class_policy="feedback",
    )
    before = ds.synthetic_class_counts(1)
    ds.feedback([0.0, 1.0, 1.0])
    assert ds.spec.feedback[0][0] == 1
    assert ds.synthetic_class_counts(0).tolist() == ds.synthetic_class_counts(0).tolist()
    assert ds.synthetic_class_counts(1)[0] > before[0]


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("values", "match"),
    [
        ([1.0, 0.5], r"shape \(3,\)"),
        ([1.0, float("nan"), 0.5], "class 1 is nan"),
        ([1.0, -0.1, 0.5], "class 1 is -0.1"),
        ([1.0, 0.5, 80.0], "class 2 is 80.0"),
        ({0: 1.0, 1: 0.5}, r"missing \[2\]"),
    ],
)
def test_bad_feedback_is_explained(values, match) -> None:
    with pytest.raises(ValueError, match=match):
        feedback_loader().feedback(values)


@pytest.mark.reliability
def test_feedback_for_an_epoch_already_planned_is_refused() -> None:
    loader = feedback_loader()
    served(loader)
    loader.feedback([0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="epoch 1 is already planned"):
        loader.feedback([0.5, 0.5, 0.5])
    batches = iter(loader)
    next(batches)
    with pytest.raises(ValueError, match="epoch 1 has started"):
        loader.feedback([0.5, 0.5, 0.5])
    loader.close()


@pytest.mark.reliability
def test_feedback_needs_the_feedback_policy() -> None:
    loader = GenerativeLoader(real_loader(), SeedImageGenerator(3), class_policy="balance")
    with pytest.raises(ValueError, match="class_policy='feedback'"):
        loader.feedback([0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="kind must be"):
        check_feedback([0.5], 1, kind="loss")
