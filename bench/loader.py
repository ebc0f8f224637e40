"""Loader throughput on CamVid: segbench's dataset + augmentation vs a bare loop.

The ceiling is a bare loop doing the same work with no framework: decode the
PNG pair with PIL, apply the same albumentations pipeline (augment=light, then
Normalize + ToTensorV2), in the main process. segbench's figure goes through
``SegmentationDataModule`` (CamVid loader with its mask checks) and a DataLoader
with 0, 1 and 2 workers. The files are read once first (warm page cache) and
the variants alternate over the repeats. The bottleneck check compares the
loader's images/s with the training images/s of the fastest zoo model at the
same size.

    python -m bench.loader [--images 367] [--batch 4] [--repeats 3]
"""

import argparse
import time

import numpy as np
import torch
from hydra.utils import instantiate
from PIL import Image

from bench.common import CAMVID, compose, machine, save


def bare_ceiling(cfg, n: int) -> float:
    from segbench.data.transforms import build_transform

    transform = build_transform(cfg.data.mean, cfg.data.std, instantiate(cfg.augment.train))
    images = sorted((CAMVID / "train").glob("*.png"))[:n]
    start = time.perf_counter()
    for path in images:
        image = np.array(Image.open(path).convert("RGB"))
        mask = np.array(Image.open(CAMVID / "trainannot" / path.name))
        out = transform(image=image, mask=mask)
        torch.as_tensor(out["mask"]).long()
    return n / (time.perf_counter() - start)


def segbench_loader(cfg, n: int, workers: int, batch: int) -> float:
    datamodule = instantiate(
        cfg.data, augment=instantiate(cfg.augment.train), num_workers=workers, batch_size=batch
    )
    dataset = torch.utils.data.Subset(datamodule.get_split("train"), range(n))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, num_workers=workers, shuffle=False
    )
    start = time.perf_counter()  # includes worker start-up, as a training epoch does
    seen = sum(b["image"].shape[0] for b in loader)
    return seen / (time.perf_counter() - start)


def train_throughput(cfg, batch: int, steps: int = 6) -> float:
    """Training images/s of the configured network on random tensors (no loader)."""
    from omegaconf import OmegaConf

    from segbench.models import build_network

    net = build_network(OmegaConf.to_container(cfg.model, resolve=True)).train()
    opt = torch.optim.Adam(net.parameters())
    h, w = cfg.data.image_size
    x, y = torch.randn(batch, 3, h, w), torch.randint(0, cfg.data.num_classes, (batch, h, w))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return batch / float(np.median(times[2:]))


#: Candidates for "the fastest zoo model" (by FLOPs the cheapest at 360x480): the
#: bottleneck check trains each briefly and keeps the one with the most images/s.
FAST_MODELS = ["model=pspnet backbone=mobilenet", "model=fcn backbone=mobilenet", "model=erfnet"]


def warm_page_cache(n: int) -> None:
    """Reads the files once, so the first loop measured does not pay for a cold disk."""
    for path in sorted((CAMVID / "train").glob("*.png"))[:n]:
        path.read_bytes()
        (CAMVID / "trainannot" / path.name).read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=367, help="CamVid train has 367")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = compose("train", ["data=camvid", f"data.root={CAMVID}", "augment=light"])
    warm_page_cache(args.images)
    ceilings, rows = [], {0: [], 1: [], 2: []}
    for r in range(args.repeats):  # interleaved, so drift in load hits every variant
        ceilings.append(bare_ceiling(cfg, args.images))
        for workers in rows:
            rows[workers].append(segbench_loader(cfg, args.images, workers, args.batch))
        print(
            f"repeat {r}: bare {ceilings[-1]:.1f} images/s; segbench 0/1/2 workers "
            + " / ".join(f"{rows[w][-1]:.1f}" for w in rows),
            flush=True,
        )
    ceiling = float(np.median(ceilings))
    median = {w: float(np.median(v)) for w, v in rows.items()}
    for workers, value in median.items():
        print(
            f"segbench loader, {workers} workers: {value:.1f} images/s "
            f"({value / ceiling:.0%} of the single-process bare loop, {ceiling:.1f})"
        )
    train = {}
    for overrides in FAST_MODELS:
        model_cfg = compose("train", ["data=camvid", f"data.root={CAMVID}", *overrides.split()])
        train[overrides] = train_throughput(model_cfg, args.batch)
        print(f"{overrides} training at 360x480: {train[overrides]:.1f} images/s", flush=True)
    fastest = max(train, key=train.get)
    best = max(median.values())
    bottleneck = "loader" if best < train[fastest] else "model"
    print(
        f"fastest: {fastest} {train[fastest]:.1f} images/s vs loader {best:.1f} -> "
        f"bottleneck: {bottleneck}"
    )
    save(
        "loader",
        {
            "machine": machine(),
            "images": args.images,
            "batch": args.batch,
            "repeats": args.repeats,
            "ceiling_images_per_s": ceiling,
            "ceiling_runs": ceilings,
            "segbench_images_per_s": {str(k): v for k, v in median.items()},
            "segbench_runs": {str(k): v for k, v in rows.items()},
            "ratio_to_ceiling": {str(k): v / ceiling for k, v in median.items()},
            "train_images_per_s": train,
            "fastest_model": fastest,
            "bottleneck": bottleneck,
        },
    )


if __name__ == "__main__":
    main()
