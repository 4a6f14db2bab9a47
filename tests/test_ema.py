"""WeightEMA: the moving average follows its definition, copies integer buffers, and round-trips."""
import pytest
import torch

from fer_core.training.ema import WeightEMA
from fer_core.models.registry import create_model


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))


def test_each_update_moves_the_average_by_one_minus_the_decay():
    net = _net()
    ema = WeightEMA(net, 0.9)
    start = {k: v.clone() for k, v in ema.model.state_dict().items()}
    with torch.no_grad():
        net[0].weight.add_(1.0)
        net[1].running_mean.fill_(2.0)
        net[1].num_batches_tracked.fill_(7)
    d = ema.current_decay()
    assert d == pytest.approx(1 / 10)  # warm-up: (1 + 0) / (10 + 0), below 0.9
    ema.update(net)
    avg = ema.model.state_dict()
    assert torch.allclose(avg["0.weight"], d * start["0.weight"] + (1 - d) * net[0].weight)
    assert torch.allclose(avg["1.running_mean"], torch.full((2,), (1 - d) * 2.0))
    assert avg["1.num_batches_tracked"] == 7  # integers are copied, not averaged
    assert torch.equal(avg["0.bias"], net[0].bias)  # unchanged weights stay put
    assert ema.steps == 1


def test_the_decay_rises_to_its_ceiling_and_the_average_lags_behind():
    net = _net()
    ema = WeightEMA(net, 0.99)
    decays = []
    for _ in range(1500):  # (1 + s) / (10 + s) reaches 0.99 at step 891
        decays.append(ema.current_decay())
        with torch.no_grad():
            net[0].bias.add_(0.01)
        ema.update(net)
    assert decays == sorted(decays) and decays[-1] == 0.99
    # a steady drift of 0.01 per step: the average trails by about 0.01 * decay / (1 - decay) = 0.99
    lag = (net[0].bias - ema.model[0].bias).mean().item()
    assert 0.9 < lag < 1.05
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_the_copy_is_independent_and_state_round_trips():
    model = create_model("cnn")
    ema = WeightEMA(model, 0.999)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert not torch.equal(next(model.parameters()), next(ema.model.parameters()))
    ema.update(model)
    other = WeightEMA(create_model("cnn"), 0.999)
    other.load_state_dict(ema.state_dict())
    assert other.steps == 1
    assert all(torch.equal(a, b) for a, b in zip(other.model.state_dict().values(), ema.model.state_dict().values()))


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, 1.5])
def test_a_decay_outside_zero_to_one_is_refused(decay):
    with pytest.raises(ValueError, match="between 0 and 1"):
        WeightEMA(_net(), decay)
