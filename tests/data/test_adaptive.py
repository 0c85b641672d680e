import json

import pytest
import torch
from checkers import SeedImageGenerator
from torch.utils.data import DataLoader, TensorDataset

from gdaload import AdaptiveRatio, GenerativeLoader

LABELS = [0, 1, 2] * 6


def make_loader(**kwargs) -> GenerativeLoader:
    ds = TensorDataset(torch.zeros(len(LABELS), 1, 4, 4), torch.tensor(LABELS))
    return GenerativeLoader(
        DataLoader(ds, batch_size=4), SeedImageGenerator(3), ratio=2.0, return_mask=True, **kwargs
    )


def served(loader: GenerativeLoader) -> torch.Tensor:
    return torch.cat([x[mask] for x, _, mask in loader])


def test_the_plateau_rule_decays_to_the_minimum_and_turns_off_at_the_end() -> None:
    control = AdaptiveRatio(start=4.0, epochs=7, decay=0.5, minimum=1.5, off_last=2)
    ratios = [control.update(s) for s in (0.5, 0.4, 0.6, 0.6, 0.7)]
    # 0.5 progress (keep 4); 0.4 drop (2); 0.6 progress (2); 0.6 plateau (1.5 floor); off.
    assert ratios == [4.0, 2.0, 2.0, 1.5, 0.0]
    assert [control.ratio(e) for e in range(6)] == [4.0, 4.0, 2.0, 2.0, 1.5, 0.0]
    assert control.update(0.9) == 0.0  # epochs 5 and 6 are the last two


def test_tolerance_counts_small_gains_as_a_plateau() -> None:
    control = AdaptiveRatio(start=1.0, epochs=10, tolerance=0.05)
    assert [control.update(s) for s in (0.5, 0.52, 0.6)] == [1.0, 0.5, 0.5]


def test_the_ratio_is_a_function_of_the_scores_and_survives_a_json_round_trip() -> None:
    control = AdaptiveRatio(start=2.0, epochs=5, off_last=1)
    for score in (0.7, 0.7, 0.8):
        control.update(score)
    again = AdaptiveRatio(start=2.0, epochs=5, off_last=1)
    again.load_state_dict(json.loads(json.dumps(control.state_dict())))
    assert [again.ratio(e) for e in range(4)] == [control.ratio(e) for e in range(4)]


def test_set_ratio_changes_the_next_epochs_count_exactly() -> None:
    loader = make_loader()
    assert len(served(loader)) == 2 * len(LABELS)
    loader.set_ratio(0.5)
    assert len(served(loader)) == len(LABELS) // 2
    loader.set_ratio(0.0)
    assert len(served(loader)) == 0


def test_thread_engine_serves_what_sync_serves_across_ratio_changes() -> None:
    sync, thread = make_loader(), make_loader(engine="thread", pool_size=64)
    try:
        for ratio in (1.0, 0.0, 3.0, None):
            assert torch.equal(served(sync), served(thread))
            if ratio is not None:
                sync.set_ratio(ratio)
                thread.set_ratio(ratio)
    finally:
        thread.close()


def test_a_resumed_run_sets_the_controllers_ratio_before_loading() -> None:
    control, loader = AdaptiveRatio(start=2.0, epochs=4), make_loader()
    served(loader)
    loader.set_ratio(control.update(0.5))
    served(loader)
    loader.set_ratio(control.update(0.4))  # plateau: 1.0
    batches = iter(loader)
    next(batches)
    state, control_state = loader.state_dict(), control.state_dict()
    rest = torch.cat([x[mask] for x, _, mask in batches])

    control2, loader2 = AdaptiveRatio(start=2.0, epochs=4), make_loader()
    control2.load_state_dict(control_state)
    loader2.set_ratio(control2.ratio(state["epoch"]))
    loader2.load_state_dict(state)
    assert torch.equal(served(loader2), rest)


@pytest.mark.reliability
@pytest.mark.parametrize("ratio", [-0.5, float("nan"), float("inf"), 1e7, "two"])
def test_set_ratio_refuses_a_ratio_outside_the_range(ratio) -> None:
    with pytest.raises(ValueError, match="ratio"):
        make_loader().set_ratio(ratio)


@pytest.mark.reliability
def test_set_ratio_mid_epoch_is_refused() -> None:
    loader = make_loader()
    batches = iter(loader)
    next(batches)
    with pytest.raises(ValueError, match="epoch 0 has started .* Change the ratio after"):
        loader.set_ratio(1.0)
    loader.close()


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"start": 0.0}, r"start must be in \(0, "),
        ({"start": 1e7}, r"start must be in \(0, 1e\+06\]"),
        ({"decay": 1.5}, r"decay must be in \(0, 1\]"),
        ({"minimum": 3.0}, r"minimum must be in \[0, 2\]"),
        ({"off_last": 9}, r"off_last must be an int in \[0, epochs=5\]"),
        ({"tolerance": float("nan")}, "tolerance must be a finite number"),
        ({"epochs": 0}, "epochs must be an int >= 1"),
    ],
)
def test_adaptive_ratio_settings_out_of_range_are_explained(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        AdaptiveRatio(**{"start": 2.0, "epochs": 5, **kwargs})


@pytest.mark.reliability
def test_adaptive_ratio_refuses_bad_scores_and_epochs_without_scores() -> None:
    control = AdaptiveRatio(start=2.0, epochs=5)
    with pytest.raises(ValueError, match="score must be a finite number"):
        control.update(float("nan"))
    with pytest.raises(ValueError, match="needs the scores of epochs 0..2"):
        control.ratio(3)
    with pytest.raises(ValueError, match="pass a dict made by state_dict"):
        control.load_state_dict({"scores": 0.5})
