"""Data-loader throughput on CamVid: images/s through the training pipeline.

    python bench/loader_throughput.py --root ../shared/datasets/camvid --workers 0 2 --augment light

Reads, decodes, augments (conf/augment/<name>.yaml), normalises and batches the
train split for ``--batches`` batches after one warm-up batch; no model.
"""

import argparse
import time

from hydra.utils import instantiate

from segbench.config import CONFIG_DIR


def measure(root: str, workers: int, augment: str, batch_size: int, batches: int) -> float:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", ["data=camvid", f"data.root={root}", f"augment={augment}",
                                f"data.num_workers={workers}", f"data.batch_size={batch_size}"])
    dm = instantiate(cfg.data, augment=instantiate(cfg.augment.train))
    loader = iter(dm.train_dataloader())
    next(loader)  # warm-up: worker start-up is not throughput
    start, images = time.perf_counter(), 0
    for _ in range(batches):
        images += next(loader)["image"].shape[0]
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/datasets/camvid")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--augment", default="light")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args()
    for workers in args.workers:
        rate = measure(args.root, workers, args.augment, args.batch_size, args.batches)
        print(f"camvid 480x360 augment={args.augment} batch={args.batch_size} "
              f"num_workers={workers}: {rate:.1f} images/s")


if __name__ == "__main__":
    main()
