import torch

from models.net import BillNet, NetConfig


def test_heads_have_the_configured_shapes():
    model = BillNet(NetConfig(num_signs=5, num_denominations=4, num_kinds=4)).eval()
    out = model(torch.randn(2, 3, 64, 144))
    assert out.counterfeit.shape == (2,) and out.signs.shape == (2, 5) and out.denomination.shape == (2, 4)
    assert out.kind.shape == (2, 4) and out.features.shape == (2, model.config.hidden)


def test_without_a_kind_head_the_kind_output_is_none():
    assert BillNet(NetConfig()).eval()(torch.randn(1, 3, 64, 144)).kind is None


def test_symmetric_network_scores_an_upside_down_view_exactly_like_the_upright_one():
    torch.manual_seed(0)
    model = BillNet(NetConfig(num_kinds=4, symmetric=True)).eval()
    x = torch.randn(3, 3, 64, 144)
    with torch.no_grad():
        a, b = model(x), model(x.flip(2, 3))
    for ta, tb in zip(a, b, strict=True):
        assert torch.allclose(ta, tb, atol=1e-5)
    plain = BillNet(NetConfig(num_kinds=4, symmetric=False)).eval()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert not torch.allclose(plain(x).counterfeit, plain(x.flip(2, 3)).counterfeit, atol=1e-5)
    model.train()  # in training each view is seen as it is (the batch is augmented with turned views)
    assert model(x).counterfeit.shape == (3,)


def test_default_network_is_compact():
    n = BillNet(NetConfig(num_kinds=4)).num_params()
    assert 300_000 <= n <= 1_000_000


def test_config_round_trip():
    c = NetConfig(stem=8, stages=(8, 16), dropout=0.0, num_kinds=4, symmetric=True)
    assert NetConfig.from_dict(c.to_dict()) == c
    assert BillNet(c)(torch.randn(1, 3, 64, 128)).signs.shape == (1, 5)
