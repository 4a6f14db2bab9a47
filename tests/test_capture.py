"""Capture corruptions (fer_core/data/capture.py) and the in-plane rotation of augment.py, measured on
synthetic faces: each does what its name says, by the amount its severity says."""
import numpy as np
import pytest
import torch

from fer_core.data import capture
from fer_core.training.augment import augment
from fer_core.data.preprocess import faces_to_tensor


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _checker(n=4, period=4) -> torch.Tensor:
    """uint8 [n, 48, 48]: a black-and-white checkerboard of `period`-px squares (all high frequency)."""
    y, x = np.mgrid[:48, :48]
    board = (((y // period) + (x // period)) % 2 * 200 + 28).astype(np.uint8)
    return torch.from_numpy(np.repeat(board[None], n, 0))


def _face(n=4) -> torch.Tensor:
    """uint8 [n, 48, 48]: a synthetic face (grey oval, dark eyes, a mouth) on a mid background."""
    y, x = np.mgrid[:48, :48]
    img = np.full((48, 48), 110, np.float64)
    img[((x - 24) / 16) ** 2 + ((y - 24) / 20) ** 2 <= 1] = 180
    for cx in (17, 31):
        img[(x - cx) ** 2 + (y - 19) ** 2 <= 9] = 40
    img[(np.abs(x - 24) <= 7) & (np.abs(y - 34) <= 1)] = 60
    return torch.from_numpy(np.repeat(img.astype(np.uint8)[None], n, 0))


def _detail(faces: torch.Tensor) -> float:
    """Mean absolute difference between neighbouring pixels: what blur and low resolution take away."""
    f = faces.float()
    return float((f[:, :, 1:] - f[:, :, :-1]).abs().mean() + (f[:, 1:] - f[:, :-1]).abs().mean())


def test_blur_removes_detail_in_step_with_sigma():
    board = _checker()
    details = [_detail(capture.blur(board, torch.full((4,), s))) for s in (0.4, 0.8, 1.6)]
    assert _detail(board) > details[0] > details[1] > details[2]
    assert details[2] < 0.3 * _detail(board)  # sigma 1.6 washes out most of 4-px squares
    assert abs(capture.blur(board, torch.full((4,), 1.6)).float().mean() - board.float().mean()) < 2  # light kept


def test_lowres_loses_what_the_small_picture_cannot_hold():
    fine, coarse = _checker(period=2), _checker(period=12)
    assert _detail(capture.lowres(fine, torch.full((4,), 4.0))) < 0.2 * _detail(fine)  # 2-px squares are gone
    error = {p: float((capture.lowres(b, torch.full((4,), 2.0)).float() - b.float()).abs().mean())
             for p, b in ((2, fine), (12, coarse))}
    assert error[12] < 0.2 * error[2]  # 12-px squares survive a 24-px face; 2-px ones do not
    assert capture.lowres(fine, torch.full((4,), 1.0)).equal(fine)  # factor 1: untouched


def test_jpeg_error_grows_as_quality_falls():
    face = _face()
    errors = [float((capture.jpeg(face, torch.full((4,), q)).float() - face.float()).abs().mean())
              for q in (95, 30, 8)]
    assert errors[0] < errors[1] < errors[2]
    assert errors[0] < 2 and errors[2] > 3


def test_light_gamma_darkens_and_contrast_narrows():
    face = _face()
    dark = capture.light(face, 2.0)
    assert dark.float().mean() < 0.75 * face.float().mean()
    assert capture.light(face, 1.0).equal(face)  # gamma 1, contrast 1, no offset: untouched
    flat = capture.light(face, 1.0, contrast=0.5).float()
    assert flat.std() == pytest.approx(0.5 * face.float().std(), rel=0.05)
    assert capture.light(face, 1.0, brightness=-30).float().mean() == pytest.approx(face.float().mean() - 30, abs=1)


def test_noise_has_the_sigma_asked_for():
    face = _face(64)
    diff = capture.noise(face, torch.full((64,), 10.0), _gen()).float() - face.float()
    assert float(diff.mean()) == pytest.approx(0, abs=0.3)
    assert float(diff.std()) == pytest.approx(10, rel=0.05)


def test_occlusion_covers_the_share_asked_for():
    face = torch.full((200, 48, 48), 1, dtype=torch.uint8)  # no occluder grey equals 1 but a 1-in-256 chance
    out = capture.occlude(face, torch.full((200,), 0.2), _gen())
    covered = (out != face).float().mean(dim=(1, 2))
    assert float(covered.median()) == pytest.approx(0.2, abs=0.04)
    rows = (out != face).any(dim=2).float().sum(1)
    assert rows.min() >= 4  # a rectangle, not scattered pixels


def test_degrade_changes_the_share_of_faces_asked_for():
    face = _face(400)
    assert capture.degrade(face, _gen(), {}).equal(face)
    assert capture.degrade(face, _gen(), {"noise": 0.0}).equal(face)
    changed = (capture.degrade(face, _gen(1), {"noise": 0.5}) != face).flatten(1).any(1).float().mean()
    assert float(changed) == pytest.approx(0.5, abs=0.08)
    every = capture.degrade(face, _gen(2), {k: 1.0 for k in capture.CORRUPTIONS})
    assert (every != face).flatten(1).any(1).all()
    assert capture.degrade(face, _gen(3), {"blur": 0.3}).equal(capture.degrade(face, _gen(3), {"blur": 0.3}))


def test_degrade_rejects_unknown_corruptions_and_bad_shares():
    with pytest.raises(ValueError, match="probs"):
        capture.degrade(_face(), _gen(), {"fog": 0.5})
    with pytest.raises(ValueError, match="probs"):
        capture.degrade(_face(), _gen(), {"blur": 1.5})


def _bar_angle(x: torch.Tensor) -> np.ndarray:
    """Orientation (degrees) of the bright bar in each normalised face, from its second moments."""
    w = (x[:, 0] - x[:, 0].amin(dim=(1, 2), keepdim=True)).clamp(min=0).numpy()
    w = np.where(w > 0.5 * w.max(axis=(1, 2), keepdims=True), w, 0)
    y, xx = np.mgrid[:48, :48]
    angles = []
    for m in w:
        s = m.sum()
        cx, cy = (m * xx).sum() / s, (m * y).sum() / s
        mxx, myy, mxy = (m * (xx - cx) ** 2).sum() / s, (m * (y - cy) ** 2).sum() / s, (m * (xx - cx) * (y - cy)).sum() / s
        angles.append(np.degrees(0.5 * np.arctan2(2 * mxy, mxx - myy)))
    return np.abs(np.asarray(angles))


@pytest.mark.parametrize("rotate", [10, 25])
def test_rotation_reaches_the_range_asked_for(rotate):
    bar = torch.full((300, 48, 48), 60, dtype=torch.uint8)
    bar[:, 22:26, 6:42] = 230
    out = augment(faces_to_tensor(bar), _gen(5), shift=0, zoom=0, rotate=rotate)
    angles = _bar_angle(out)
    assert angles.max() == pytest.approx(rotate, abs=2.5)
    assert np.percentile(angles, 50) == pytest.approx(rotate / 2, abs=3)  # uniform in [-rotate, rotate]
