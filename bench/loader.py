"""Loader throughput on CamVid: segbench's dataset + augmentation vs a bare loop.

The ceiling is a bare loop doing the same work with no framework: decode the
PNG pair with PIL, apply the same albumentations pipeline (augment=light, then
Normalize + ToTensorV2), in the main process. segbench's figure goes through
``SegmentationDataModule`` (CamVid loader with its mask checks) and a DataLoader
with 0, 1 and 2 workers. The bottleneck check compares the loader's images/s
with the training images/s of the fastest zoo model at the same size.

    python -m bench.loader [--images 120] [--batch 4]
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
    datamodule = instantiate(cfg.data, augment=instantiate(cfg.augment.train),
                             num_workers=workers, batch_size=batch)
    dataset = torch.utils.data.Subset(datamodule.get_split("train"), range(n))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=workers,
                                         shuffle=False)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--fastest-model", default="model=erfnet",
                        help="override picking the fastest zoo model for the bottleneck check")
    args = parser.parse_args()
    cfg = compose("train", ["data=camvid", f"data.root={CAMVID}", "augment=light"])
    ceiling = bare_ceiling(cfg, args.images)
    print(f"bare decode + albumentations: {ceiling:.1f} images/s")
    rows = {}
    for workers in (0, 1, 2):
        rows[workers] = segbench_loader(cfg, args.images, workers, args.batch)
        print(f"segbench loader, {workers} workers: {rows[workers]:.1f} images/s "
              f"({rows[workers] / ceiling:.0%} of the single-process ceiling)")
    model_cfg = compose("train", ["data=camvid", f"data.root={CAMVID}", args.fastest_model])
    train_ips = train_throughput(model_cfg, args.batch)
    best = max(rows.values())
    print(f"{args.fastest_model} training at 360x480: {train_ips:.1f} images/s -> "
          f"bottleneck: {'loader' if best < train_ips else 'model'}")
    save("loader", {"machine": machine(), "images": args.images, "batch": args.batch,
                    "ceiling_images_per_s": ceiling,
                    "segbench_images_per_s": {str(k): v for k, v in rows.items()},
                    "ratio_to_ceiling": {str(k): v / ceiling for k, v in rows.items()},
                    "fastest_model": args.fastest_model, "train_images_per_s": train_ips,
                    "bottleneck": "loader" if best < train_ips else "model"})


if __name__ == "__main__":
    main()
