import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import TensorDataset
from torchvision.models import inception_v3

from gdaload.metrics import InceptionFeatures, extract_features, load_inception, penultimate


class Projection(nn.Module):
    """A fixed random linear map from flattened images, seeded without the global RNG."""

    def __init__(self, in_features: int, out_features: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(out_features, in_features, generator=g))
        self.norm = nn.BatchNorm1d(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.flatten(1) @ self.weight.T)


class TupleOutput(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x


def sample_images(n: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 2, 2, generator=torch.Generator().manual_seed(seed))


def test_tensor_dataset_and_batches_give_the_same_features():
    x, model = sample_images(), Projection(12, 5)
    y = torch.arange(10)
    expected = x.flatten(1) @ model.weight.detach().T / (1 + 1e-5) ** 0.5  # fresh BN stats
    from_tensor = extract_features(x, model, batch_size=3)
    from_dataset = extract_features(TensorDataset(x, y), model, batch_size=4)
    from_batches = extract_features([(x[:6], y[:6]), (x[6:], y[6:])], model)
    from_plain_batches = extract_features([x[:2], x[2:]], model)
    assert from_tensor.shape == (10, 5) and from_tensor.dtype == torch.float32
    torch.testing.assert_close(from_tensor, expected)
    for other in (from_dataset, from_batches, from_plain_batches):
        torch.testing.assert_close(other, from_tensor)


def test_outputs_are_flattened_and_modes_restored():
    model = Projection(12, 5)
    model.train()
    model.norm.eval()  # a frozen layer inside a training model must stay frozen
    feats = extract_features(sample_images(), nn.Sequential(model, nn.Unflatten(1, (5, 1))))
    assert feats.shape == (10, 5)
    assert model.training and not model.norm.training
    assert int(model.norm.num_batches_tracked) == 0  # ran in eval mode


@pytest.mark.reliability
def test_non_finite_features_name_the_first_bad_sample():
    x = sample_images()
    x[7, 0, 0, 0] = float("nan")
    x[9, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite.*sample 7"):
        extract_features(x, nn.Flatten(), batch_size=3)


@pytest.mark.reliability
def test_bad_sources_are_rejected():
    with pytest.raises(ValueError, match="no samples"):
        extract_features([], nn.Flatten())
    with pytest.raises(ValueError, match="within one set"):
        extract_features([sample_images(2), torch.zeros(2, 3, 4, 4)], nn.Flatten())
    with pytest.raises(ValueError, match="first dimension must be the batch"):
        extract_features(sample_images(), nn.Flatten(0))
    with pytest.raises(TypeError, match="must return a tensor"):
        extract_features(sample_images(), TupleOutput())


def test_penultimate_returns_the_input_of_the_last_linear():
    body = nn.Sequential(nn.Flatten(), nn.ReLU())
    net = nn.Sequential(body, Projection(12, 3), nn.Linear(3, 2))
    x = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(penultimate(net)(x), net[1](body(x)))
    torch.testing.assert_close(penultimate(net, layer="1.norm")(x), body(x) @ net[1].weight.T)
    with pytest.raises(ValueError, match="no nn.Linear"):
        penultimate(body)


def random_inception_state(seed: int) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        shapes = inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict()
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, meta in shapes.items():
        if not meta.is_floating_point():
            state[key] = torch.zeros(meta.shape, dtype=meta.dtype)
        elif key.endswith("running_var"):
            state[key] = torch.ones(meta.shape)
        else:
            state[key] = 0.05 * torch.randn(meta.shape, generator=g)
    return state


@pytest.fixture(scope="module")
def inception_state() -> dict[str, torch.Tensor]:
    return random_inception_state(seed=0)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_load_inception_round_trip(tmp_path, inception_state, suffix):
    path = tmp_path / f"inception{suffix}"
    if suffix == ".safetensors":
        save_file(inception_state, str(path))
    else:
        torch.save(inception_state, path)
    model = load_inception(path, resize=False)
    assert isinstance(model, InceptionFeatures) and not model.training
    loaded = model.net.state_dict()
    key = "Mixed_7c.branch_pool.conv.weight"
    torch.testing.assert_close(loaded[key], inception_state[key])
    assert not any(k.startswith(("fc.", "AuxLogits.")) for k in loaded)
    if suffix == ".pth":  # one forward is enough; 75x75 is Inception-v3's minimum size
        image = torch.rand(1, 1, 75, 75, generator=torch.Generator().manual_seed(0))
        feats = extract_features(image, model)
        assert feats.shape == (1, 2048) and torch.isfinite(feats).all()


def test_load_inception_accepts_checkpoints_without_aux_head_or_with_other_classes(
    tmp_path, inception_state
):
    state = {k: v for k, v in inception_state.items() if not k.startswith("AuxLogits.")}
    state["fc.weight"], state["fc.bias"] = torch.zeros(7, 2048), torch.zeros(7)
    torch.save(state, tmp_path / "custom.pt")
    assert isinstance(load_inception(tmp_path / "custom.pt"), InceptionFeatures)


@pytest.mark.reliability
def test_load_inception_rejects_other_state_dicts(tmp_path, inception_state):
    torch.save({"weight": torch.zeros(3, 3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an Inception-v3 state dict"):
        load_inception(tmp_path / "other.pt")
    wrong = dict(inception_state)
    wrong["Conv2d_1a_3x3.conv.weight"] = torch.zeros(1, 1, 1, 1)
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="not an Inception-v3 state dict"):
        load_inception(tmp_path / "wrong.pt")
