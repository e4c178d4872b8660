"""Benchmark: what appearance augmentation costs per training epoch on a CPU.

    .venv/bin/python -m bench.appearance [--images 650] [--size 128] [--epochs 3]

Times one training epoch of the baseline CNN (``model.fit`` on the tf.data pipeline of
``pipeline.training.inputs``, random uint8 images of tb-cxr's training-split size) without
appearance augmentation, with each transform alone, and with all of them as the ``generalisation``
suite sets them; the median of ``--epochs`` epochs after one warm-up epoch. Prints a markdown table;
BENCHMARKS.md records it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=650, help="training images per epoch")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    import keras
    import numpy as np

    from pipeline.config import preset
    from pipeline.experiments.suites import APPEARANCE
    from pipeline.model import build_model
    from pipeline.training import inputs

    rng = np.random.default_rng(0)
    arrays = rng.integers(0, 256, (args.images, args.size, args.size), dtype=np.uint8)
    labels = rng.integers(0, 2, args.images)
    every = np.arange(args.images)
    settings = {"none": {}}
    settings |= {field.removeprefix("augment."): {field: v} for field, v in APPEARANCE.items()}
    settings["all (generalisation suite)"] = APPEARANCE
    print(
        f"| appearance augmentation | s / epoch ({args.images} images, {args.size} px) "
        "| × none |\n|---|---:|---:|"
    )
    base = None
    for name, changes in settings.items():
        cfg = preset("baseline", **{"data.image_size": args.size, **changes})
        keras.utils.set_random_seed(0)
        model = build_model(cfg)
        ds = inputs.make_dataset(
            arrays, labels, every, batch_size=32, training=True, appearance=cfg.augment
        )
        model.fit(ds, epochs=1, verbose=0)
        times = []
        for _ in range(args.epochs):
            start = time.perf_counter()
            model.fit(ds, epochs=1, verbose=0)
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        base = base or seconds
        print(f"| {name} | {seconds:.2f} | {seconds / base:.2f} |", flush=True)
        keras.backend.clear_session()
    print(f"\nload average while measuring: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
