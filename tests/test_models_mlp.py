import pytest
import torch

from dlc.models.embeddings import timestep_embedding
from dlc.models.mlp import MLPDenoiser


@pytest.mark.parametrize("style", ["plain", "residual"])
@pytest.mark.parametrize("learn_sigma, out_dim", [(True, 4), (False, 2)])
def test_shapes_and_conditioning(style, learn_sigma, out_dim):
    torch.manual_seed(0)
    model = MLPDenoiser(width=32, depth=4, num_classes=5, learn_sigma=learn_sigma, style=style)
    x, t = torch.randn(8, 2), torch.randint(0, 1000, (8,))
    a = model(x, t, y=torch.zeros(8, dtype=torch.long))
    b = model(x, t, y=torch.full((8,), 3))
    assert a.shape == (8, out_dim)
    assert not torch.allclose(a, b), "the condition must change the output"
    with pytest.raises(ValueError, match="pass y"):
        model(x, t)


def test_depth_counts_linear_layers_on_the_data_path():
    plain = MLPDenoiser(width=16, depth=4, style="plain")
    assert len(plain.layers) == 2  # input + 2 hidden + output = 4
    with pytest.raises(ValueError):
        MLPDenoiser(depth=1)


def test_timestep_embedding_is_sinusoidal():
    t = torch.tensor([0, 7])
    embedding = timestep_embedding(t, 6, max_period=100.0)
    freqs = torch.exp(-torch.log(torch.tensor(100.0)) * torch.arange(3) / 3)
    expected = torch.cat([torch.cos(7 * freqs), torch.sin(7 * freqs)])
    torch.testing.assert_close(embedding[1], expected)
    torch.testing.assert_close(embedding[0], torch.tensor([1.0, 1, 1, 0, 0, 0]))
    assert timestep_embedding(t, 7).shape == (2, 7)
