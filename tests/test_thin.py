"""Thinning a trained VGG-style model into a narrower one (`train --init` across widths)."""
import pytest
import torch

from fer_core.cli import build_parser
from fer_core.errors import FerError
from fer_core.models import cards, thin
from fer_core.models.registry import create_model
from fer_core.training import train
from helpers_cards import v2_card
from helpers_data import make_kaggle


def _trained_like(name="vgg13_s", seed=0):
    """A model whose BatchNorm statistics and gains are spread out, as after training."""
    torch.manual_seed(seed)
    model = create_model(name)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.2, 2.0), m.running_var.uniform_(0.5, 2.0), m.running_mean.normal_()
    return model.eval()


def test_the_first_block_keeps_the_sources_strongest_channels_exactly():
    source = _trained_like()
    with torch.no_grad():
        source[0][1].weight[:16] = 0  # channels 0-15 pass nothing on: the 16 kept must be 16-31
    target = thin.thin(source, create_model("vgg13_t").eval())
    x = torch.randn(4, 1, 48, 48)
    with torch.no_grad():
        assert torch.allclose(target[0](x), source[0](x)[:, 16:], atol=1e-6)
    assert thin.strongest(source[0], 16).tolist() == list(range(16, 32))


def test_each_later_block_reads_the_channels_the_block_before_kept():
    source, target = _trained_like(), create_model("vgg13_t").eval()
    thin.thin(source, target)
    blocks, thinned = thin._blocks(source), thin._blocks(target)
    for i in range(1, len(blocks)):
        x, y = blocks[i], thinned[i]
        rows = thin.strongest(x, y[0].out_channels)
        cols = thin.strongest(blocks[i - 1], thinned[i - 1][0].out_channels)
        assert torch.equal(y[0].weight, x[0].weight[rows][:, cols])
        assert torch.equal(y[1].running_var, x[1].running_var[rows])
    first = thin._linears(target)[0]
    kept = thin.strongest(blocks[-1], 192)
    assert torch.equal(first.weight[:, 9:18], thin._linears(source)[0].weight[:, kept[1] * 9:kept[1] * 9 + 9])


def test_thinning_to_the_same_widths_gives_the_same_model():
    source = _trained_like()
    copy = thin.thin(source, create_model("vgg13_s").eval())
    x = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        assert torch.allclose(copy(x), source(x), atol=1e-5)


@pytest.mark.parametrize("source, target, message", [
    ("vgg13_t", "vgg13_s", "block 0 has 32 channels, more than the source's 16"),
    ("cnn", "vgg13_t", "do not have the same VGG-style layers"),
    ("vgg13_s", "mini_xception", "do not have the same VGG-style layers"),
    ("vgg13_s", "cnn", "do not have the same VGG-style layers"),
])
def test_models_that_cannot_be_thinned_are_named(source, target, message):
    assert message in thin.problem(create_model(source), create_model(target))
    with pytest.raises(FerError, match=message):
        thin.thin(create_model(source), create_model(target))


def test_other_kernel_sizes_are_named():
    source, target = create_model("vgg13_s"), create_model("vgg13_t")
    target[0][0] = torch.nn.Conv2d(1, 16, 5, padding=2, bias=False)
    assert thin.problem(source, target) == "block 0 has (5, 5) kernels, the source's (3, 3)"


def test_train_init_thins_a_shipped_model_and_the_card_says_so(tmp_path):
    source = _trained_like()
    cards.save_weights(source, v2_card("wide", arch="vgg13_s", accuracy=0.6), tmp_path / "w")
    data = make_kaggle(tmp_path / "d", counts={"train": [4] * 7, "val": [1] * 7})
    args = build_parser().parse_args([
        "train", "--model", "vgg13_t", "--data", str(data.path), "--epochs", "1", "--batch-size", "16",
        "--threads", "1", "--out", str(tmp_path / "run"), "--no-export", "--weights-dir", str(tmp_path / "w"),
        "--init", "wide", "--lr", "1e-9", "--warmup", "0"])
    state = train.run(args, [])
    assert state["init"]["name"] == "wide" and state["init"]["thinned_from"] == "vgg13_s"
    after = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    expected = thin.thin(cards.load_model("wide", tmp_path / "w")[0].float(), create_model("vgg13_t")).state_dict()
    assert torch.allclose(after["0.0.weight"], expected["0.0.weight"], atol=1e-6)  # tiny steps: still the copy
    assert torch.allclose(after["14.weight"], expected["14.weight"], atol=1e-6)
