"""Losses: ignore_index everywhere, class weights, U-Net's border weight map."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tests.conftest import compose_config

from segbench.evaluation.metrics import ConfusionMatrix
from segbench.training.losses import (
    BoundaryWeightedCE,
    CEDiceLoss,
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    LovaszLoss,
    OhemCrossEntropy,
    build_loss,
    unet_weight_map,
)

IGNORE = 255
LOSSES = {
    "ce": lambda: CrossEntropyLoss(IGNORE, class_weights=[1.0, 2.0, 0.5]),
    "dice": lambda: DiceLoss(IGNORE, class_weights=[1.0, 2.0, 0.5]),
    "focal": lambda: FocalLoss(IGNORE, class_weights=[1.0, 2.0, 0.5]),
    "lovasz": lambda: LovaszLoss(IGNORE),
    "ce+dice": lambda: CEDiceLoss(IGNORE, class_weights=[1.0, 2.0, 0.5]),
    "boundary": lambda: BoundaryWeightedCE(IGNORE, class_weights=[1.0, 2.0, 0.5], sigma=2.0),
    "ohem": lambda: OhemCrossEntropy(IGNORE, thresh=0.7, min_kept=20, class_weights=[1, 2, 0.5]),
}


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 12, 16, generator=g)
    target = torch.randint(0, 3, (2, 12, 16), generator=g)
    target[:, :4] = IGNORE  # a band of ignored pixels
    return logits, target


@pytest.mark.parametrize("name", LOSSES)
def test_ignored_pixels_do_not_count(name):
    """Changing logits under ignored pixels changes neither the loss nor its gradient elsewhere."""
    loss_fn = LOSSES[name]()
    logits, target = _batch()
    other = logits.clone()
    other[:, :, :4] = torch.randn(2, 3, 4, 16) * 50
    a, b = logits.clone().requires_grad_(), other.clone().requires_grad_()
    la, lb = loss_fn(a, target), loss_fn(b, target)
    assert la.ndim == 0 and torch.isfinite(la)
    assert torch.allclose(la, lb, atol=1e-6)
    la.backward()
    lb.backward()
    assert torch.allclose(a.grad[:, :, 4:], b.grad[:, :, 4:], atol=1e-6)
    assert (a.grad[:, :, :4] == 0).all()
    # smp issue #546: an ignore value far outside the class range must not reach one_hot.
    assert torch.isfinite(loss_fn(logits, torch.full_like(target, IGNORE)))


@pytest.mark.parametrize("name", LOSSES)
def test_all_ignored_batch_gives_zero_with_gradient(name):
    logits = torch.randn(1, 3, 8, 8, requires_grad=True)
    loss = LOSSES[name]()(logits, torch.full((1, 8, 8), IGNORE))
    assert loss.ndim == 0 and loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None


def test_cross_entropy_weights_match_hand_computation():
    logits, target = _batch()
    w = torch.tensor([1.0, 2.0, 0.5])
    keep = target != IGNORE
    nll = -F.log_softmax(logits, 1).gather(1, target.clamp(max=2)[:, None])[:, 0]
    expected = (nll[keep] * w[target[keep]]).sum() / w[target[keep]].sum()
    assert torch.allclose(CrossEntropyLoss(IGNORE, [1.0, 2.0, 0.5])(logits, target), expected)


def test_boundary_without_border_term_is_weighted_ce():
    logits, target = _batch(1)
    expected = CrossEntropyLoss(IGNORE, [1.0, 2.0, 0.5])(logits, target)
    got = BoundaryWeightedCE(IGNORE, [1.0, 2.0, 0.5], w0=0.0)(logits, target)
    assert torch.allclose(got, expected, atol=1e-6)


def test_unet_weight_map_on_a_hand_made_mask():
    """Two squares 4 px apart on background (U-Net's setting): d1 + d2 = gap width in the gap."""
    mask = np.zeros((20, 30), np.int64)
    mask[5:15, 3:12] = 1
    mask[5:15, 16:25] = 1  # columns 12..15 are the 4-px gap
    mask[0, 0] = IGNORE
    wc = np.array([0.5, 2.0], np.float32)
    w = unet_weight_map(mask, IGNORE, wc, w0=10, sigma=5, background_index=0)
    # Column 12 is 1 px from the left square and 4 px from the right one: d1 + d2 = 5.
    assert math.isclose(w[10, 12], 0.5 + 10 * math.exp(-((1 + 4) ** 2) / 50), rel_tol=1e-5)
    assert math.isclose(w[10, 13], 0.5 + 10 * math.exp(-((2 + 3) ** 2) / 50), rel_tol=1e-5)
    assert w[10, 8] == pytest.approx(2.0)  # inside an object: class weight only
    assert w[0, 0] == 0.0  # ignored
    # Far from both squares the border term has vanished (d1 + d2 >= 2 * 5 + 13).
    assert w[19, 29] == pytest.approx(0.5, abs=1e-3)
    # One object only: no second border, so no border term.
    single = np.where(mask[:, :14] == 1, 1, 0)
    assert np.allclose(unet_weight_map(single, IGNORE, wc, background_index=0), wc[single])


def test_unet_weight_map_without_background_weights_class_boundaries():
    mask = np.zeros((10, 20), np.int64)
    mask[:, 10:] = 1
    w = unet_weight_map(mask, IGNORE, None, w0=10, sigma=5)
    # Pixel 9 is inside the left region (d1 = 0) and 1 px from the right one.
    assert math.isclose(w[5, 9], 1 + 10 * math.exp(-1 / 50), rel_tol=1e-5)
    assert w[5, 0] < w[5, 5] < w[5, 9]


def test_metrics_ignore_the_ignore_index():
    cm = ConfusionMatrix(3, IGNORE)
    target = torch.tensor([[0, 1, 2, IGNORE]])
    cm.update(torch.tensor([[0, 1, 2, 0]]), target)
    assert cm.compute().sum() == 3 and cm.compute().trace() == 3


@pytest.mark.parametrize("loss", ["ce", "dice", "focal", "lovasz", "ce+dice", "boundary", "ohem"])
def test_every_loss_config_instantiates(tmp_path, loss):
    cfg = compose_config("train", tmp_path, [f"loss={loss}", "data.num_workers=0"])

    class FakeData:
        num_classes = cfg.data.num_classes

    fn = build_loss(cfg.loss, FakeData())
    logits = torch.randn(1, cfg.data.num_classes, 8, 8)
    assert torch.isfinite(fn(logits, torch.randint(0, cfg.data.num_classes, (1, 8, 8))))


def test_class_weight_list_and_bad_scheme(tmp_path):
    from segbench.errors import ConfigError

    class FakeData:
        num_classes = 8

    cfg = compose_config("train", tmp_path, ["loss.class_weights=[1,1,1,1,2,1,1,1]"])
    assert build_loss(cfg.loss, FakeData()).weight.tolist() == [1, 1, 1, 1, 2, 1, 1, 1]
    cfg = compose_config("train", tmp_path, ["loss.class_weights=[1,2]"])
    with pytest.raises(ConfigError, match="need 8 non-negative weights"):
        build_loss(cfg.loss, FakeData())
    cfg = compose_config("train", tmp_path, ["loss.class_weights=median_frq"])
    with pytest.raises(ConfigError, match="allowed: median_freq"):
        build_loss(cfg.loss, FakeData())


def test_scheme_name_without_data_is_refused_clearly():
    from segbench.errors import ConfigError

    assert CrossEntropyLoss(IGNORE, "none").weight is None
    with pytest.raises(ConfigError, match="median_freq.*computed from the training split"):
        DiceLoss(IGNORE, "median_freq")


def _ohem_batch():
    """Two classes, five pixels: true-class probabilities 0.9, 0.6, 0.3, 0.8 and one ignored.

    Logits ``[log p, log(1 - p)]`` with target 0 give softmax p exactly; the ignored
    pixel is the least confident of all, so counting it would change every result.
    """
    p = torch.tensor([0.9, 0.6, 0.3, 0.8, 0.01])
    logits = torch.stack([p.log(), (1 - p).log()])[None, :, None, :]  # (1, 2, 1, 5)
    target = torch.tensor([[[0, 0, 0, 0, IGNORE]]])
    return logits, target, p


@pytest.mark.parametrize(
    ("thresh", "min_kept", "kept"),
    [
        # threshold = max(p_sorted[min(min_kept, n - 1)], thresh), keep p < threshold;
        # valid p sorted: 0.3, 0.6, 0.8, 0.9
        (0.7, 1, [0.3, 0.6]),  # max(0.6, 0.7) = 0.7: the threshold decides
        (0.2, 1, [0.3]),  # max(0.6, 0.2) = 0.6: min_kept=1 keeps the hardest pixel only
        (0.2, 3, [0.3, 0.6, 0.8]),  # max(0.9, 0.2): the three hardest
        (0.7, 100, [0.3, 0.6, 0.8]),  # min_kept beyond the count: index n - 1 = 0.9
        (1.0, 0, [0.3, 0.6, 0.8, 0.9]),  # thresh 1: plain CE over the labelled pixels
    ],
)
def test_ohem_keeps_the_hand_computed_pixels(thresh, min_kept, kept):
    logits, target, _ = _ohem_batch()
    loss = OhemCrossEntropy(IGNORE, thresh=thresh, min_kept=min_kept)(logits, target)
    expected = -torch.tensor(kept).log().mean()
    assert torch.allclose(loss, expected, atol=1e-6), (loss, expected)


def _ohem_reference(logits, target, thresh, min_kept, weight=None):
    """PIDNet's OhemCrossEntropy as written there: boolean indexing, sort, threshold."""
    pixel = F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE, reduction="none")
    valid = (target != IGNORE).flatten()
    prob = logits.softmax(1).gather(1, target.clamp(max=logits.shape[1] - 1).unsqueeze(1))
    prob, order = prob.flatten()[valid].sort()
    threshold = max(prob[min(min_kept, prob.numel() - 1)].item(), thresh)
    kept = pixel.flatten()[valid][order][prob < threshold]
    return kept.mean() if kept.numel() else logits.sum() * 0.0


@pytest.mark.parametrize(("thresh", "min_kept"), [(0.7, 50), (0.3, 10), (0.9, 0), (0.7, 10**6)])
def test_ohem_selects_the_pixels_of_the_indexing_reference(thresh, min_kept):
    gen = torch.Generator().manual_seed(min_kept)
    logits = torch.randn(2, 3, 12, 10, generator=gen) * 2
    target = torch.randint(0, 3, (2, 12, 10), generator=gen)
    target[torch.rand(2, 12, 10, generator=gen) < 0.2] = IGNORE
    weight = torch.tensor([1.0, 2.0, 0.5])
    got = OhemCrossEntropy(IGNORE, thresh, min_kept, class_weights=weight.tolist())(logits, target)
    torch.testing.assert_close(got, _ohem_reference(logits, target, thresh, min_kept, weight))


def test_ohem_reads_nothing_back_to_the_host():
    """On the meta device any data-dependent shape or host read raises: the loss has none,
    so a GPU training step is never stalled waiting for it."""
    loss = OhemCrossEntropy(IGNORE, thresh=0.7, min_kept=20, class_weights=[1, 2, 0.5]).to("meta")
    logits = torch.randn(2, 3, 8, 8, device="meta", requires_grad=True)
    target = torch.randint(0, 3, (2, 8, 8), device="meta")
    out = loss(logits, target)
    out.backward()
    assert out.shape == () and logits.grad.shape == logits.shape


def test_ohem_class_weights_scale_each_pixel_and_nothing_kept_is_zero():
    logits, target, _ = _ohem_batch()
    loss = OhemCrossEntropy(IGNORE, thresh=0.7, min_kept=1, class_weights=[2.0, 1.0])
    # PIDNet's weighted criterion: the plain mean of weight x CE over the kept pixels
    assert torch.allclose(loss(logits, target), -2 * torch.tensor([0.3, 0.6]).log().mean())
    easy = OhemCrossEntropy(IGNORE, thresh=0.1, min_kept=0)  # max(0.3, 0.1): none below 0.3
    leaf = logits.clone().requires_grad_()
    out = easy(leaf, target)
    assert out.item() == 0.0
    out.backward()
    assert leaf.grad is not None


def test_ohem_gradient_reaches_only_kept_pixels():
    logits, target, _ = _ohem_batch()
    leaf = logits.clone().requires_grad_()
    OhemCrossEntropy(IGNORE, thresh=0.2, min_kept=1)(leaf, target).backward()
    touched = (leaf.grad.abs().sum(1) > 0)[0, 0].tolist()
    assert touched == [False, False, True, False, False]  # only p = 0.3


def test_ohem_refuses_bad_settings():
    from segbench.errors import ConfigError

    with pytest.raises(ConfigError, match="loss.thresh"):
        OhemCrossEntropy(IGNORE, thresh=1.5)
    with pytest.raises(ConfigError, match="loss.min_kept"):
        OhemCrossEntropy(IGNORE, min_kept=-1)
