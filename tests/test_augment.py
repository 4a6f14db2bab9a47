"""Batch augmentation: shape-preserving, seeded, flips about half the faces, erases some."""
import pytest
import torch

from fer_core.training import augment as aug
from fer_core.training.augment import augment


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _batch(n=64, seed=0):
    return torch.randn(n, 1, 48, 48, generator=_gen(seed))


def _left_bright(n):
    """Left half +1, right half -1 (left-right asymmetric)."""
    x = torch.full((n, 1, 48, 48), -1.0)
    x[..., :24] = 1.0
    return x


def test_keeps_shape_dtype_and_input():
    x = _batch()
    copy = x.clone()
    out = augment(x, _gen(0))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.equal(x, copy)  # a copy, the input is untouched
    assert torch.isfinite(out).all()
    assert not torch.equal(out, x)


def test_works_on_float64_and_a_batch_of_one():
    out = augment(torch.randn(1, 1, 48, 48, dtype=torch.float64), _gen(0))
    assert out.shape == (1, 1, 48, 48) and out.dtype == torch.float64


def test_same_seed_same_result_other_seed_other_result():
    x = _batch()
    a, b, c = augment(x, _gen(7)), augment(x, _gen(7)), augment(x, _gen(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # every face gets its own draw: no two faces of a constant batch are warped alike
    same = augment(_left_bright(8), _gen(3))
    assert all(not torch.allclose(same[i], same[j]) for i in range(8) for j in range(i + 1, 8))


def test_the_generator_advances():
    g, x = _gen(1), _batch(8)
    assert not torch.allclose(augment(x, g), augment(x, g))


def test_flips_about_half():
    n = 1000
    out = augment(_left_bright(n), _gen(0))
    core = out[:, 0, 12:36]  # rows away from the padded border
    left, right = core[..., 4:20].mean((1, 2)), core[..., 28:44].mean((1, 2))
    flipped = right > left
    assert (left - right).abs().min() > 0.5  # every face is clearly one way or the other
    assert 0.44 < flipped.float().mean() < 0.56  # Binomial(1000, 0.5): 6 standard deviations either side


def _edge_columns(out):
    """Where an unflipped face's bright/dark edge (column 24 before the warp) lies on the middle row, where
    rotation and zoom about the centre barely move it."""
    row = out[:, 0, 24, :]
    not_flipped = row[:, 4:20].mean(1) > row[:, 28:44].mean(1)
    return (row[not_flipped] < -0.5).float().argmax(1).float()


@pytest.mark.parametrize("kwargs, shift", [({}, aug.SHIFT), ({"shift": 8}, 8)])
def test_shift_stays_within_its_pixels_and_covers_them(monkeypatch, kwargs, shift):
    """The edge moves at most SHIFT px by default, or `shift` px when asked (plus a pixel of interpolation)."""
    monkeypatch.setattr(aug, "ERASE_P", 0.0)
    out = augment(_left_bright(400), _gen(2), **kwargs)
    first_dark = _edge_columns(out)
    assert first_dark.min() >= 24 - shift and first_dark.max() <= 24 + shift + 1
    assert first_dark.std() > 1  # it does move
    assert first_dark.max() - first_dark.min() >= 2 * shift - 2  # over the whole range


def test_zoom_scales_a_centred_square_within_its_range(monkeypatch):
    """A 20-px square at the centre: with no shift its middle row stays 20 px wide without zoom, and spans
    about 20 * (1 +- zoom) with it (rotation of up to 10 degrees lengthens that row by under 2%)."""
    monkeypatch.setattr(aug, "ERASE_P", 0.0)
    x = torch.full((400, 1, 48, 48), -1.0)
    x[..., 14:34, 14:34] = 1.0

    def widths(zoom):
        return (augment(x, _gen(4), shift=0, zoom=zoom)[:, 0, 24, :] > 0).sum(1).float()

    plain, zoomed = widths(0.0), widths(0.2)
    assert plain.min() >= 19 and plain.max() <= 21
    assert zoomed.min() >= 15 and zoomed.max() <= 26
    assert zoomed.min() <= 18 and zoomed.max() >= 23  # both ways, near the ends of the range


def test_bad_shift_or_zoom_is_a_value_error():
    for kwargs in ({"shift": -1}, {"zoom": 1.0}, {"zoom": -0.1}):
        with pytest.raises(ValueError, match="shift must be >= 0 px, zoom in"):
            augment(_batch(2), _gen(0), **kwargs)


def test_erasing_zeroes_rectangles_in_some_faces(monkeypatch):
    n = 400
    x = torch.ones(n, 1, 48, 48)
    center = slice(16, 32)  # no shift, zoom or rotation reaches the padding here
    monkeypatch.setattr(aug, "ERASE_P", 0.0)
    plain = augment(x, _gen(5))
    assert (plain[:, 0, center, center] > 0.5).all()
    monkeypatch.setattr(aug, "ERASE_P", 1.0)
    erased = augment(x, _gen(5))  # the same draws, every erasing switched on
    zeros_plain, zeros_erased = (plain == 0).sum((1, 2, 3)), (erased == 0).sum((1, 2, 3))
    assert ((plain == 0) <= (erased == 0)).all()  # erasing only adds zeros, the warp is the same
    added = zeros_erased - zeros_plain
    assert (added > 0).float().mean() > 0.9
    assert added.max() <= 0.2 * 48 * 48 + 2 * 48  # at most about ERASE_AREA's upper bound
    assert torch.equal(erased[erased != 0], plain[erased != 0])

    monkeypatch.setattr(aug, "ERASE_P", 0.25)  # the default: about a quarter of the faces
    default = augment(x, _gen(5))
    hit = ((default == 0).sum((1, 2, 3)) > (plain == 0).sum((1, 2, 3))).float().mean()
    assert 0.15 < hit < 0.35


def test_default_erasing_blanks_the_middle_of_some_faces():
    out = augment(torch.ones(400, 1, 48, 48), _gen(0))
    middle_zero = (out[:, 0, 16:32, 16:32] == 0).flatten(1).any(1).float().mean()
    assert 0.02 < middle_zero < 0.3


def test_mixup_blends_each_face_with_its_partner():
    x = _batch(32)
    out, partner, lam = aug.mix(x, _gen(0), mixup=0.4)
    assert 0 <= lam <= 1 and sorted(partner.tolist()) == list(range(32))
    assert torch.allclose(out, lam * x + (1 - lam) * x[partner], atol=1e-6)
    again, partner2, lam2 = aug.mix(x, _gen(0), mixup=0.4)
    assert torch.equal(again, out) and torch.equal(partner2, partner) and lam2 == lam
    lams = [aug.mix(x, _gen(s), mixup=0.4)[2] for s in range(200)]
    # Beta(0.4, 0.4) is U-shaped: most draws lie near 0 or 1, its mean is 1/2
    assert 0.4 < sum(lams) / len(lams) < 0.6
    assert sum(min(v, 1 - v) < 0.1 for v in lams) > 0.4 * len(lams)


def test_cutmix_pastes_one_rectangle_whose_share_is_one_minus_lam():
    x = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 1, 48, 48).contiguous()  # face i is all i
    for seed in range(20):
        out, partner, lam = aug.mix(x, _gen(seed), cutmix=1.0)
        for i in range(8):
            pasted = out[i, 0] == partner[i]
            kept = out[i, 0] == i
            assert (pasted | kept).all()
            if partner[i] != i:
                assert abs(kept.float().mean().item() - lam) < 1e-6
                rows, cols = pasted.any(1).nonzero(), pasted.any(0).nonzero()
                if len(rows):  # the pasted pixels fill a rectangle
                    assert pasted.sum() == len(rows) * len(cols)
    assert torch.equal(x, torch.arange(8.0).view(8, 1, 1, 1).expand(8, 1, 48, 48))  # input untouched


def test_with_both_on_each_batch_takes_one_or_the_other():
    x = _batch(16)
    kinds = set()
    for seed in range(40):
        out, partner, lam = aug.mix(x, _gen(seed), mixup=0.4, cutmix=1.0)
        blended = torch.allclose(out, lam * x + (1 - lam) * x[partner], atol=1e-6)
        pasted = bool(((out == x) | (out == x[partner])).all())
        assert blended or pasted
        kinds.add("mixup" if blended and not pasted else "cutmix" if pasted else "either")
    assert {"mixup", "cutmix"} <= kinds


def test_mix_refuses_no_or_negative_alpha():
    for kwargs in ({}, {"mixup": -1.0}, {"mixup": 0.0, "cutmix": -0.5}):
        with pytest.raises(ValueError, match="mixup or cutmix above 0"):
            aug.mix(_batch(4), _gen(0), **kwargs)
