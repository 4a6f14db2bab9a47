"""The model registry: every architecture maps 1x48x48 faces to 7 logits and trains; --pretrained never downloads."""
import pytest
import torch

from fer_core.models.registry import (count_params, create_model, for_inference, fuse_conv_bn, imagenet_weights_file,
                                      list_models)

EXPECTED = {"cnn", "mini_xception", "vgg13", "vgg13_s", "vgg13_t", "resnet18", "mobilenet_v2", "shufflenet_v2", "squeezenet"}
WITH_IMAGENET = ["mobilenet_v2", "resnet18", "shufflenet_v2", "squeezenet"]


def test_registry_lists_the_documented_architectures():
    assert set(list_models()) == EXPECTED
    assert list_models() == sorted(list_models())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_forward_and_one_sgd_step(name):
    torch.manual_seed(0)
    model = create_model(name)
    x, y = torch.randn(2, 1, 48, 48), torch.tensor([3, 5])
    out = model(x)
    assert out.shape == (2, 7) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(out, y)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    opt.step()
    changed = sum(not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters()))
    assert changed >= len(before) // 2, f"only {changed}/{len(before)} parameter tensors moved"
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 48, 48)).shape == (1, 7)  # a single face in eval mode


def test_num_classes_is_honoured():
    assert create_model("cnn", num_classes=3)(torch.randn(2, 1, 48, 48)).shape == (2, 3)


def test_unknown_name_lists_the_models():
    with pytest.raises(ValueError, match=r"unknown model 'vgg99'; registered: cnn, mini_xception, mobilenet_v2"):
        create_model("vgg99")


def test_mini_xception_is_about_60k_params():
    assert 50_000 <= count_params(create_model("mini_xception")) <= 70_000


def test_param_counts_are_ordered_as_documented():
    n = {name: count_params(create_model(name)) for name in ("cnn", "vgg13", "vgg13_s", "vgg13_t")}
    assert 0.9e6 < n["cnn"] < 1.1e6
    assert n["vgg13_s"] < n["vgg13"] / 3
    assert n["vgg13_t"] == 1_098_007


@pytest.mark.parametrize("name", WITH_IMAGENET)
def test_pretrained_missing_from_the_torch_cache_is_a_clear_error(name, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    file = imagenet_weights_file(name)
    assert str(file).startswith(str(tmp_path / "torch"))
    with pytest.raises(FileNotFoundError) as e:
        create_model(name, pretrained=True)
    msg = str(e.value)
    assert name in msg and str(file) in msg and "never downloads" in msg and "without --pretrained" in msg
    assert not (tmp_path / "torch").exists() or not any((tmp_path / "torch").rglob("*.pth"))  # nothing fetched


@pytest.mark.parametrize("name", WITH_IMAGENET)
def test_pretrained_loads_from_the_torch_cache_and_makes_the_stem_grey(name, tmp_path, monkeypatch):
    """A fake ImageNet file in the cache: matching tensors are copied, RGB kernels summed, the rest kept."""
    import torchvision
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    reference = {"resnet18": torchvision.models.resnet18, "mobilenet_v2": torchvision.models.mobilenet_v2,
                 "shufflenet_v2": torchvision.models.shufflenet_v2_x1_0,
                 "squeezenet": torchvision.models.squeezenet1_0}[name]()
    state = reference.state_dict()
    file = imagenet_weights_file(name)
    file.parent.mkdir(parents=True)
    torch.save(state, file)
    torch.manual_seed(0)
    model = create_model(name, pretrained=True)
    own = model.state_dict()
    copied = [k for k, v in state.items() if k in own and own[k].shape == v.shape and v.is_floating_point()]
    assert len(copied) > 10
    for k in copied:
        assert torch.equal(own[k], state[k]), k
    grey = [k for k, v in state.items() if v.ndim == 4 and v.shape[1] == 3 and k in own
            and own[k].shape == v.sum(1, keepdim=True).shape]
    for k in grey:
        assert torch.allclose(own[k], state[k].sum(1, keepdim=True)), k
    # the stems that were 3x3 already (mobilenet, shufflenet) keep ImageNet's kernels, summed to grey
    assert len(grey) == (1 if name in ("mobilenet_v2", "shufflenet_v2") else 0)
    # the 1000-class head is not copied into the 7-class head
    assert model(torch.randn(1, 1, 48, 48)).shape == (1, 7)


@pytest.mark.parametrize("name", ["cnn", "vgg13", "vgg13_s", "mini_xception"])
def test_architectures_without_imagenet_weights_refuse_pretrained(name):
    with pytest.raises(ValueError, match=f"{name} has no ImageNet weights; only mobilenet_v2, resnet18"):
        create_model(name, pretrained=True)


def test_create_model_is_seeded():
    torch.manual_seed(1)
    a = create_model("mini_xception")
    torch.manual_seed(1)
    b = create_model("mini_xception")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    x = torch.randn(3, 1, 48, 48)
    a.eval(), b.eval()
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("name", list_models())
def test_folding_batchnorm_keeps_the_outputs(name):
    """fuse_conv_bn on a model with trained-like BatchNorm statistics: the same probabilities to 1e-5, no
    BatchNorm left where it follows a convolution in a Sequential, and the original model untouched."""
    torch.manual_seed(0)
    model = create_model(name).train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 1, 48, 48) * 1.5 + 0.3)  # moves the running statistics off 0/1
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_conv_bn(model)
    x = torch.randn(5, 1, 48, 48)
    with torch.inference_mode():
        diff = (torch.softmax(model(x), 1) - torch.softmax(fused(x), 1)).abs().max().item()
    assert diff < 1e-5
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    bns = sum(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    if name in {"cnn", "vgg13", "vgg13_s", "mini_xception", "mobilenet_v2", "shufflenet_v2"}:
        assert bns == 0
    assert bns < max(1, sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()))
    with torch.inference_mode():
        fast = torch.softmax(for_inference(model)(x), 1)
    assert (fast - torch.softmax(model(x), 1)).abs().max().item() < 1e-5
