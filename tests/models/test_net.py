import torch

from models.net import BillNet, NetConfig


def test_heads_have_the_configured_shapes():
    model = BillNet(NetConfig(num_signs=5, num_denominations=4)).eval()
    cf, signs, denom = model(torch.randn(2, 3, 112, 256))
    assert cf.shape == (2,) and signs.shape == (2, 5) and denom.shape == (2, 4)


def test_default_network_is_compact():
    n = BillNet(NetConfig()).num_params()
    assert 300_000 <= n <= 1_000_000


def test_config_round_trip():
    c = NetConfig(stem=8, stages=(8, 16), dropout=0.0)
    assert NetConfig.from_dict(c.to_dict()) == c
    assert BillNet(c)(torch.randn(1, 3, 64, 128))[1].shape == (1, 5)
