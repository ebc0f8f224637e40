"""Contract tests of the model zoo, in the manner of smp's shared model tester.

Every model x backbone the configs offer is built from its own yaml files,
small (MobileNetV2 x0.35) and on tiny inputs, and must: run forward and
backward, return logits of the input's size for odd sizes, be deterministic in
eval mode, survive a state_dict round trip and be rebuilt from a checkpoint.
"""

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from segbench.config import CONFIG_DIR, group_options
from segbench.errors import ConfigError
from segbench.models import ERFNet, build_network, check_compatible, load_network
from segbench.models.fcn import BilinearDeconv, bilinear_kernel
from segbench.models.init import initialize
from segbench.models.transfer import load_matching
from segbench.profiling.zoo import model_config, valid_pairs

NUM_CLASSES = 5
SMALL = {"mobilenet": {"width": 0.35}}  # the cheapest variant of each backbone for tests
SLOW_BACKBONES = {"resnext_wsl", "vgg16_bn", "resnet50"}


def backbone_cfg(name: str, **overrides) -> dict:
    """``conf/backbone/<name>.yaml`` as shipped, at its cheapest size for tests."""
    base = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "backbone" / f"{name}.yaml"))
    return {**base, **SMALL.get(name, {}), **overrides}


def net_cfg(model: str, backbone: str | dict, num_classes: int = NUM_CLASSES, **kwargs) -> dict:
    """The model's config as shipped on a backbone (option name or config), ``kwargs`` set."""
    backbone = backbone_cfg(backbone) if isinstance(backbone, str) else backbone
    return {**model_config(model, backbone, num_classes), **kwargs}


PAIRS = [
    pytest.param(m, b, marks=[pytest.mark.slow] if b in SLOW_BACKBONES else [], id=f"{m}-{b}")
    for m, b in valid_pairs(group_options("model"), group_options("backbone"))
]


def test_every_model_has_a_backbone_and_every_backbone_a_model():
    pairs = [p.values for p in PAIRS]
    assert {m for m, _ in pairs} == set(group_options("model"))
    assert {b for _, b in pairs} == set(group_options("backbone"))


@pytest.mark.parametrize(("model", "backbone"), PAIRS)
def test_contract(model, backbone, tmp_path):
    torch.manual_seed(0)
    cfg = net_cfg(model, backbone)
    net = build_network(cfg)

    # forward + backward in train mode; every parameter takes part
    x = torch.randn(2, 3, 64, 96)
    out = net(x)
    assert out.shape == (2, NUM_CLASSES, 64, 96)
    out.mean().backward()
    no_grad = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"

    # odd size, eval mode: same size out, deterministic
    net.eval()
    odd = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        first, second = net(odd), net(odd)
    assert first.shape == (1, NUM_CLASSES, 97, 131)
    assert torch.isfinite(first).all()
    assert torch.equal(first, second)

    # state_dict round trip into a fresh build of the same config
    torch.manual_seed(1)
    other = build_network(cfg).eval()
    other.load_state_dict(net.state_dict())
    with torch.no_grad():
        assert torch.allclose(other(odd), first, atol=1e-5)

    # a checkpoint dict (what Lightning writes) alone rebuilds the network
    ckpt = tmp_path / "net.ckpt"
    torch.save(
        {
            "hyper_parameters": {"net": cfg},
            "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
        },
        ckpt,
    )
    rebuilt, _ = load_network(ckpt)
    with torch.no_grad():
        assert torch.allclose(rebuilt(odd), first, atol=1e-5)


@pytest.mark.parametrize(
    ("model", "backbone"), [("deeplabv3plus", "mobilenet"), ("erfnet", "erfnet")]
)
def test_camvid_size(model, backbone):
    # 360x480 is not a multiple of 16 or 32: smp's DeepLabV3+ alone refuses it.
    net = build_network(net_cfg(model, backbone)).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 360, 480)).shape == (1, NUM_CLASSES, 360, 480)


def test_mobilenet_widths_and_versions():
    params = {}
    for width in (0.35, 0.5, 1.4):
        net = build_network(net_cfg("fcn", backbone_cfg("mobilenet", width=width)))
        assert net.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, NUM_CLASSES, 32, 32)
        params[width] = sum(p.numel() for p in net.parameters())
    assert params[0.35] < params[0.5] < params[1.4]
    v3 = build_network(net_cfg("unet", backbone_cfg("mobilenet", version="v3", width=0.75)))
    assert v3.encoder.model.__class__.__name__.startswith("MobileNetV3")
    with pytest.raises(ConfigError, match=r"(?s)backbone.width=0.35.*allowed: 0.75"):
        build_network(net_cfg("unet", backbone_cfg("mobilenet", version="v3")))


def _convs(net: nn.Module) -> list[nn.Conv2d]:
    return [
        m
        for m in net.modules()
        if type(m) is nn.Conv2d and m.groups == 1 and m.weight.numel() >= 20000
    ]


def test_kaiming_init_statistics():
    net = build_network(net_cfg("unet", "mobilenet"))
    initialize(net, "kaiming")
    for conv in _convs(net):
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.05)
        assert conv.weight.mean().abs().item() < 0.1 * math.sqrt(2 / fan_out) + 1e-3
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)
    biases = [m.bias for m in net.modules() if isinstance(m, nn.Conv2d) and m.bias is not None]
    assert biases and all(torch.all(b == 0) for b in biases)


def test_xavier_init_statistics():
    net = build_network(net_cfg("erfnet", "erfnet"))
    initialize(net, "xavier")
    convs = _convs(net)
    assert convs
    for conv in convs:
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(conv.weight)
        bound = math.sqrt(6 / (fan_in + fan_out))
        w = conv.weight.abs()
        assert w.max().item() <= bound and w.max().item() > 0.95 * bound
        # uniform on [-b, b]: std b / sqrt(3)
        assert conv.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)


def test_init_keeps_pretrained_encoder(tmp_path):
    source = build_network(net_cfg("fcn", "mobilenet"))
    weights = tmp_path / "encoder.pth"
    torch.save(source.encoder.state_dict(), weights)
    net = build_network(net_cfg("fcn", backbone_cfg("mobilenet", weights=str(weights))))
    initialize(net, "kaiming")
    for key, value in source.encoder.state_dict().items():
        assert torch.equal(net.encoder.state_dict()[key], value), key


def test_fcn_deconvs_stay_bilinear_after_init():
    net = build_network(net_cfg("fcn", "mobilenet", variant="8s"))
    initialize(net, "xavier")
    deconvs = [m for m in net.modules() if isinstance(m, BilinearDeconv)]
    assert [d.factor for d in deconvs] == [2, 2, 8]
    for deconv in deconvs:
        assert torch.equal(deconv.weight.detach(), bilinear_kernel(NUM_CLASSES, deconv.factor))
        assert deconv.weight.requires_grad  # learnable, only initialised to bilinear
    # bilinear: a constant map stays constant (away from the border), classes stay apart
    up = deconvs[-1]
    x = torch.zeros(1, NUM_CLASSES, 6, 6)
    x[:, 1] = 3.0
    with torch.no_grad():
        y = up(x)
    assert y.shape == (1, NUM_CLASSES, 48, 48)
    assert torch.allclose(y[0, 1, 8:-8, 8:-8], torch.full((32, 32), 3.0))
    assert torch.all(y[0, [0, 2, 3, 4]] == 0)


def test_fcn_variants_differ_in_skips():
    nets = {v: build_network(net_cfg("fcn", "mobilenet", variant=v)) for v in ("32s", "16s", "8s")}
    assert {v: sorted(n.score) for v, n in nets.items()} == {
        "32s": ["stride32"],
        "16s": ["stride16", "stride32"],
        "8s": ["stride16", "stride32", "stride8"],
    }
    assert [n.up_final.factor for n in nets.values()] == [32, 16, 8]
    # the stride-8 scores reach the output of FCN-8s only
    net = nets["8s"].eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = net(x)
        net.score["stride8"].bias.add_(1.0)
        assert not torch.allclose(net(x), before)
    with pytest.raises(ConfigError, match=r"(?s)model.variant='4s'.*allowed: 8s"):
        build_network(net_cfg("fcn", "mobilenet", variant="4s"))


def test_erfnet_parameter_count_and_encoder_only():
    net = build_network(net_cfg("erfnet", "erfnet", num_classes=20))
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == 2_064_256
    enc = ERFNet(backbone_cfg("erfnet"), 20, encoder_only=True)
    full_encoder = sum(p.numel() for p in net.encoder.parameters())
    assert sum(p.numel() for p in enc.parameters()) == full_encoder + 128 * 20 + 20
    assert enc(torch.zeros(1, 3, 97, 131)).shape == (1, 20, 13, 17)  # ceil(H/8), ceil(W/8)


def test_segnet_basic_size_and_pool_indices():
    net = build_network(net_cfg("segnet", "segnet_basic", num_classes=11))
    # 4 x 7x7x64 encoder convs, 4 mirrored decoder convs, 8 BN, a 1x1 classifier
    expected = (3 * 49 * 64 + 64) + 7 * (64 * 49 * 64 + 64) + 8 * 128 + (64 * 11 + 11)
    assert sum(p.numel() for p in net.parameters()) == expected == 1_416_587
    # the decoder unpools with the encoder's indices: one value per 2x2 window, the rest 0
    unpooled = []
    net.decoder.stages[0].register_forward_pre_hook(lambda _, args: unpooled.append(args[0]))
    net.eval()(torch.randn(1, 3, 32, 32))
    (x,) = unpooled
    assert x.shape[-2:] == (4, 4)
    windows = (x != 0).float().unfold(2, 2, 2).unfold(3, 2, 2).sum((-1, -2))
    assert windows.max() <= 1 and windows.sum() > 0


def test_refused_pairs_name_the_allowed_backbones():
    with pytest.raises(
        ConfigError, match=r"(?s)ERFNet does not take this backbone.*allowed: erfnet"
    ):
        check_compatible(net_cfg("erfnet", "erfnet"), backbone_cfg("resnet50"))
    with pytest.raises(ConfigError, match=r"(?s)SegNet does not take.*allowed: .*segnet_basic"):
        check_compatible(net_cfg("segnet", "segnet_basic"), backbone_cfg("mobilenet"))
    with pytest.raises(
        ConfigError,
        match=r"(?s)Unet does not take this backbone.*allowed: .*"
        r"mobilenet.*fix: use backbone=",
    ):
        check_compatible(net_cfg("unet", "mobilenet"), backbone_cfg("erfnet"))


def test_model_picks_its_own_backbone(train_cfg):
    assert train_cfg("model=erfnet").backbone.name == "erfnet"
    assert train_cfg("model=segnet").backbone.name == "vgg16_bn"
    assert train_cfg("model=segnet", "backbone=segnet_basic").model.backbone.name == "segnet_basic"
    assert train_cfg("model=fcn").backbone.name == "mobilenet"


def test_train_refuses_wrong_backbone_before_building(train_cfg):
    from segbench.training.train import train

    with pytest.raises(
        ConfigError, match=r"(?s)backbone='resnet50'.*ERFNet.*fix: use backbone=erfnet"
    ):
        train(train_cfg("model=erfnet", "backbone=resnet50"))


def test_missing_named_weights_fail_with_the_fix(monkeypatch, tmp_path):
    import huggingface_hub.constants as hub

    # An empty cache: the weights cannot be found, and nothing is downloaded.
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        ConfigError,
        match=r"(?s)imagenet weights of tu-mobilenetv2_035 are not in "
        r"the local cache.*backbone.weights=null",
    ):
        build_network(net_cfg("fcn", backbone_cfg("mobilenet", weights="imagenet")))
    with pytest.raises(ConfigError, match=r"(?s)no such file.*backbone.weights=null"):
        build_network(net_cfg("erfnet", backbone_cfg("erfnet", weights=str(tmp_path / "x.pth"))))
    with pytest.raises(ConfigError, match=r"(?s)no such named weights.*allowed: imagenet"):
        build_network(net_cfg("fcn", backbone_cfg("mobilenet", weights="instagram")))


def _save_ckpt(net: nn.Module, cfg: dict, path):
    torch.save(
        {
            "hyper_parameters": {"net": cfg},
            "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
        },
        path,
    )
    return path


def test_transfer_skips_new_class_count(tmp_path):
    cfg11 = net_cfg("erfnet", "erfnet", num_classes=11)
    source = build_network(cfg11)
    ckpt = _save_ckpt(source, cfg11, tmp_path / "cityscapes.ckpt")
    target = build_network(net_cfg("erfnet", "erfnet", num_classes=20))
    report = load_matching(target, ckpt)
    # only the last deconv (16 -> classes) changes shape: weight and bias
    assert sorted(report["skipped"]) == ["decoder.6.bias", "decoder.6.weight"]
    assert not report["missing"] and not report["unused"]
    for name in report["loaded"]:
        assert torch.equal(target.state_dict()[name], source.state_dict()[name])


def test_transfer_encoder_stage_into_full_erfnet(tmp_path):
    enc_cfg = net_cfg("erfnet", "erfnet", encoder_only=True)
    stage1 = build_network(enc_cfg)
    ckpt = _save_ckpt(stage1, enc_cfg, tmp_path / "encoder.ckpt")
    full = build_network(net_cfg("erfnet", "erfnet"))
    report = load_matching(full, ckpt)
    assert all(n.startswith("encoder.") for n in report["loaded"])
    assert len(report["loaded"]) == len(full.encoder.state_dict())
    assert all(n.startswith("decoder.") for n in report["missing"])
    assert sorted(report["unused"]) == ["classifier.bias", "classifier.weight"]
    with pytest.raises(ConfigError, match="none of its"):
        load_matching(build_network(net_cfg("fcn", "mobilenet")), ckpt)


@pytest.mark.parametrize("model", ["fcn", "unet", "pspnet", "deeplabv3plus", "erfnet", "segnet"])
def test_fast_dev_run_each_model(model, train_cfg):
    from segbench.training.train import train

    extra = {"erfnet": [], "segnet": ["backbone=segnet_basic"]}.get(model, ["backbone.width=0.35"])
    train(train_cfg(f"model={model}", *extra, "debug=fdr", "data.batch_size=2"))


@pytest.mark.slow
def test_erfnet_two_stage_training(train_cfg, tmp_path):
    from segbench.training.train import train

    one_batch = [
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        "data.batch_size=2",
    ]
    train(train_cfg("model=erfnet", "model.encoder_only=true", *one_batch))
    stage1 = tmp_path / "checkpoints" / "last.ckpt"
    encoder = load_network(stage1)[0].encoder
    # lr 0: the second stage's weights stay what init.checkpoint loaded
    stage2 = train_cfg("model=erfnet", f"init.checkpoint={stage1}", "optimizer.lr=0", *one_batch)
    stage2.paths.output_dir = str(tmp_path / "stage2")
    train(stage2)
    full, _ = load_network(tmp_path / "stage2" / "checkpoints" / "last.ckpt")
    assert full.encoder_only is False
    for (name, loaded), (_, trained) in zip(
        full.encoder.named_parameters(), encoder.named_parameters(), strict=True
    ):
        assert torch.equal(loaded, trained), name


def test_a_new_smp_backbone_is_one_yaml(tmp_path, train_cfg):
    # conf/backbone/resnet18.yaml as the README's "Add a backbone" shows it, found through
    # Hydra's searchpath: no Python table changes, and model=unet trains on it.
    folder = tmp_path / "extra_conf" / "backbone"
    folder.mkdir(parents=True)
    (folder / "resnet18.yaml").write_text(
        "name: resnet18\nencoder: resnet18\nweights: null\nnamed_weights: [imagenet]\n"
    )
    from segbench.training.train import train

    cfg = train_cfg(
        f"hydra.searchpath=[file://{tmp_path / 'extra_conf'}]",
        "backbone=resnet18",
        "model=unet",
        "debug=fdr",
    )
    assert cfg.backbone.encoder == "resnet18"
    metrics = train(cfg)
    assert metrics["params"] == pytest.approx(14.33e6, rel=0.01)  # smp's U-Net/ResNet-18


def test_own_encoder_backbone_is_refused_by_smp_models():
    from segbench.models import check_compatible

    with pytest.raises(ConfigError, match="Unet does not take this backbone") as err:
        check_compatible({"_target_": "segbench.models.Unet"}, {"name": "erfnet"})
    assert "mobilenet" in str(err.value) and "resnet50" in str(err.value)


def test_checkpoints_from_before_the_backbone_yamls_named_encoders_still_load():
    from segbench.models.backbones import smp_encoder_name

    with pytest.warns(DeprecationWarning, match="read as resnext101_32x8d"):
        assert smp_encoder_name({"name": "resnext_wsl"}) == "resnext101_32x8d"
    with pytest.warns(DeprecationWarning):
        assert smp_encoder_name({"name": "mobilenet", "version": "v3", "width": 0.75}) == (
            "tu-mobilenetv3_large_075"
        )


def test_pspnet_paper_shape_is_default_and_compact_stays_reachable():
    """The paper's PSPNet (whole MobileNetV2, dilated to stride 8) against smp's default cut."""
    mobilenet = backbone_cfg("mobilenet", width=1.0)
    paper = build_network(net_cfg("pspnet", mobilenet, num_classes=11)).eval()
    compact = build_network(net_cfg("pspnet", mobilenet, num_classes=11, variant="compact"))
    assert sum(p.numel() for p in paper.parameters()) == 2_294_075
    assert sum(p.numel() for p in compact.parameters()) == 141_059
    with torch.no_grad():
        features = paper.model.encoder(torch.zeros(1, 3, 360, 480))
        assert features[-1].shape[-2:] == (45, 60)  # stride 8, not 32: dilated
        assert features[-1].shape[1] == 320  # MobileNetV2's last stage takes part
        assert paper(torch.zeros(1, 3, 360, 480)).shape == (1, 11, 360, 480)
    assert paper.model.decoder.dropout.p == 0.1 and compact.model.decoder.dropout.p == 0.2
    # a checkpoint's config from before the variants (no variant key, depth 3) rebuilds compact
    old = {k: v for k, v in net_cfg("pspnet", mobilenet, num_classes=11).items()}
    old.pop("variant"), old.pop("output_stride")
    old.update(encoder_depth=3, psp_dropout=0.2, upsampling=None)
    rebuilt = build_network(old)
    assert rebuilt.state_dict().keys() == compact.state_dict().keys()
    with pytest.raises(ConfigError, match=r"model.variant(?s:.*)allowed: paper, compact"):
        build_network(net_cfg("pspnet", mobilenet, variant="papper"))
