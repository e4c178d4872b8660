"""Benchmark: training speed of the classic Keras input path against ours, and how it scales.

    .venv/bin/python -m bench.train_speed [--data ../shared/data/tb-cxr] [--sizes 128 224]
        [--epochs 3] [--scaling 1000 4000 16000] [--quick] [--json out.json]

Every configuration trains the baseline CNN on every image of one folder (the preset's batch size,
seed and class weights; rotation, zoom, horizontal flip and brightness augmentation), each in a
fresh subprocess so that its peak memory is its own:

- A, the classic path: ``tf.keras.preprocessing.image.ImageDataGenerator(...)
  .flow_from_directory(...)`` decodes, resizes and augments every PNG in Python, every epoch;
  the model is built without its augmentation layers.
- B, ours: the preprocessed uint8 cache, memory-mapped and streamed by
  :func:`pipeline.training.inputs.make_dataset`; augmentation runs as Keras layers inside the model.
- floor: the model's own compute, the model without augmentation over float32 tensors already
  in memory. No input path can train faster than this.

Epoch time is the median over ``--epochs`` epochs after one warm-up epoch; CPU s is the process's
CPU time per epoch (all threads), CPU % that time over the wall time and the number of cores. Peak
memory is the process's high-water resident set (VmHWM); "anon" is the peak of its anonymous part,
i.e. without the file pages of the memory-mapped cache, which the kernel can drop at any time.

Also measured: where the time of one batch goes (each stage of both paths and the model step,
timed alone; plus the model step under XLA and bfloat16, which training does not use); scanning
and preprocessing the folder with an empty cache (cold) and again (warm); and how epoch time and
memory grow with the dataset (``--scaling``: phantom sets at 128 px, generated once into
bench-runs/). The 1-minute load average is recorded with every figure: on a shared machine it says
how much of the CPU the benchmark had. The figures in BENCHMARKS.md come from this command.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from pipeline.config import RunConfig
    from pipeline.data.scan import DatasetIndex

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
BENCH_DIR = ROOT / "bench-runs"
PATHS = ("A", "B", "floor")
SCALING_SIZE = 128
PROFILE_BATCHES = 10
MiB = 2**20


def bench_config(data: str | Path, size: int, *, augment: bool) -> RunConfig:
    """The baseline preset at ``size`` px; with the benchmark's four augmentations, or none."""
    from pipeline.config import preset

    if augment:
        changes = {"augment.horizontal_flip": True}
    else:
        changes = {
            "augment.rotation_deg": 0.0,
            "augment.zoom": 0.0,
            "augment.brightness": 0.0,
            "augment.horizontal_flip": False,
        }
    return preset("baseline", **{"data.path": str(data), "data.image_size": size, **changes})


def _memory() -> dict[str, float]:
    """This process's resident memory in MiB: now (rss), peak (hwm) and its anonymous part."""
    status = Path("/proc/self/status")
    if not status.exists():  # not Linux: only the peak, from getrusage (bytes on macOS)
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {"hwm": peak / (MiB if sys.platform == "darwin" else 1024)}
    fields = {}
    for line in status.read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon"):
            fields[key] = int(value.split()[0]) / 1024  # kB -> MiB
    return {"rss": fields["VmRSS"], "hwm": fields["VmHWM"], "anon": fields["RssAnon"]}


class _PeakAnon:
    """Samples the anonymous resident memory every 50 ms from a thread; ``peak`` in MiB."""

    def __init__(self) -> None:
        self.peak = _memory().get("anon", float("nan"))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, _memory().get("anon", float("nan")))

    def __enter__(self) -> _PeakAnon:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _memory().get("anon", float("nan")))


def _class_folders(index: DatasetIndex) -> tuple[Path, list[str]]:
    """The parent folder and the [normal, TB] class folder names that flow_from_directory needs."""
    folders = []
    for label in (0, 1):
        parents = {Path(r.path).parent for r in index.records if r.label == label}
        if len(parents) != 1:
            raise SystemExit(
                f"{index.root}: the classic path needs one folder per class, found label {label} "
                f"in {sorted(map(str, parents))[:3]}"
            )
        folders.append(parents.pop())
    if folders[0].parent != folders[1].parent:
        raise SystemExit(f"{index.root}: the two class folders must share one parent folder")
    return folders[0].parent, [f.name for f in folders]


def _classic_flow(index: DatasetIndex, size: int, batch_size: int, *, augment: bool):
    """``ImageDataGenerator(...).flow_from_directory(...)`` as the tutorials write it."""
    import tensorflow as tf

    cfg = bench_config(index.root, size, augment=True)
    aug = cfg.augment
    options = {
        "rotation_range": aug.rotation_deg,
        "zoom_range": aug.zoom,
        "horizontal_flip": aug.horizontal_flip,
        "brightness_range": (1.0 - aug.brightness, 1.0 + aug.brightness),
        "fill_mode": "nearest",
    }
    generator = tf.keras.preprocessing.image.ImageDataGenerator(**(options if augment else {}))
    root, classes = _class_folders(index)
    return generator.flow_from_directory(
        root,
        target_size=(size, size),
        color_mode="grayscale",
        classes=classes,
        class_mode="binary",
        batch_size=batch_size,
        seed=cfg.seed,
    )


def measure(path: str, data: Path, size: int, epochs: int, batch_size: int) -> dict:
    """Train the baseline for 1 + ``epochs`` epochs through input ``path``; times and memory.

    Meant to run alone in a fresh process (see :func:`run_isolated`): the peak memory it reports
    is the whole process's. The preprocessing cache must already be built.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from pipeline.data import index_cache
    from pipeline.model import build_model
    from pipeline.preprocessing import cache
    from pipeline.training import inputs

    class EpochClock(keras.callbacks.Callback):
        """Wall and process CPU seconds of every epoch (CPU summed over all threads)."""

        def __init__(self) -> None:
            super().__init__()
            self.wall: list[float] = []
            self.cpu: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self._wall, self._cpu = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.wall.append(time.perf_counter() - self._wall)
            self.cpu.append(time.process_time() - self._cpu)

    load = os.getloadavg()[0]
    cfg = bench_config(data, size, augment=path == "B")
    keras.utils.set_random_seed(cfg.seed)
    model = build_model(cfg)
    runtime = _memory()
    index = index_cache.load_index(data)

    if path == "A":
        ds = _classic_flow(index, size, batch_size, augment=True)
        labels = ds.classes
    else:
        arrays = cache.cached_arrays(index, cfg.data)
        labels = index.labels
        if path == "B":
            ds = inputs.make_dataset(
                arrays,
                labels,
                np.arange(len(labels)),
                batch_size=batch_size,
                training=True,
                seed=cfg.seed,
            )
        else:
            x = tf.cast(tf.constant(np.asarray(arrays)), tf.float32)[..., tf.newaxis]
            y = tf.constant(labels.astype(np.float32))
            ds = (
                tf.data.Dataset.from_tensor_slices((x, y))
                .batch(batch_size)
                .prefetch(tf.data.AUTOTUNE)
            )

    clock = EpochClock()
    with _PeakAnon() as anon:
        model.fit(
            ds,
            epochs=1 + epochs,
            class_weight=inputs.class_weights(labels),
            callbacks=[clock],
            verbose=0,
        )
    wall, cpu = clock.wall[1:], clock.cpu[1:]
    epoch_s = statistics.median(wall)
    return {
        "path": path,
        "data": str(data),
        "size": size,
        "images": len(labels),
        "batch_size": batch_size,
        "epoch_s": epoch_s,
        "epoch_cpu_s": statistics.median(cpu),
        "images_per_s": len(labels) / epoch_s,
        "cpu_percent": 100.0 * sum(cpu) / sum(wall) / (os.cpu_count() or 1),
        "peak_rss_mib": _memory()["hwm"],
        "peak_anon_mib": anon.peak,
        "runtime_rss_mib": runtime.get("rss"),
        "epochs_wall_s": clock.wall,
        "epochs_cpu_s": clock.cpu,
        "load_start": load,
        "load_end": os.getloadavg()[0],
    }


def profile(data: Path, size: int, batch_size: int) -> dict:
    """Milliseconds of wall and CPU time per batch of each stage, each timed on its own.

    Stages: the classic generator with and without its augmentation; reading a batch of our
    cache through :func:`pipeline.training.inputs.make_dataset`; the model's augmentation layers;
    one training step of the model without augmentation (the floor), also under XLA and under
    ``mixed_bfloat16``, neither of which training uses.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from pipeline.data import index_cache
    from pipeline.model import build_model
    from pipeline.preprocessing import cache
    from pipeline.training import inputs

    load = os.getloadavg()[0]
    plain = bench_config(data, size, augment=False)
    keras.utils.set_random_seed(plain.seed)
    index = index_cache.load_index(data)
    arrays = cache.cached_arrays(index, plain.data)
    stages: dict[str, dict[str, float]] = {}

    def timed(name: str, step: Callable[[], object]) -> None:
        step()  # warm-up: tracing, thread pools, first reads
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(PROFILE_BATCHES):
            step()
        stages[name] = {
            "wall_ms": 1000 * (time.perf_counter() - wall) / PROFILE_BATCHES,
            "cpu_ms": 1000 * (time.process_time() - cpu) / PROFILE_BATCHES,
        }

    for augment in (False, True):
        flow = _classic_flow(index, size, batch_size, augment=augment)
        label = "decode + resize + augment" if augment else "decode + resize"
        timed(f"A: {label} (ImageDataGenerator)", lambda flow=flow: next(flow))

    stream = iter(
        inputs.make_dataset(
            arrays, index.labels, np.arange(len(index.labels)), batch_size=batch_size
        ).repeat()
    )
    timed("B: read a batch from the cache (tf.data)", lambda: next(stream))

    x, y = next(stream)
    augmented = build_model(bench_config(data, size, augment=True))
    augmentation = [
        layer for layer in augmented.layers if type(layer).__name__.startswith("Random")
    ]

    @tf.function
    def augment_batch(batch: tf.Tensor) -> tf.Tensor:
        for layer in augmentation:
            batch = layer(batch, training=True)
        return batch

    timed("B: augmentation layers", lambda: augment_batch(x / 255.0).numpy())

    model = build_model(plain)
    timed("model: one training step (floor)", lambda: model.train_on_batch(x, y))
    model = build_model(plain)
    model.jit_compile = True
    timed("model: one training step, XLA", lambda: model.train_on_batch(x, y))
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = build_model(plain)
    keras.mixed_precision.set_global_policy("float32")
    timed("model: one training step, mixed_bfloat16", lambda: model.train_on_batch(x, y))
    return {
        "path": "profile",
        "size": size,
        "batch_size": batch_size,
        "stages": stages,
        "load_start": load,
        "load_end": os.getloadavg()[0],
    }


def run_isolated(path: str, data: Path, size: int, epochs: int, batch_size: int) -> dict:
    """:func:`measure` (or :func:`profile`) in a fresh Python process: this module, --worker."""
    with tempfile.NamedTemporaryFile(suffix=".json", dir=BENCH_DIR) as out:
        command = [sys.executable, "-m", "bench.train_speed", "--worker", path]
        command += ["--worker-out", out.name, "--data", str(data), "--sizes", str(size)]
        command += ["--epochs", str(epochs), "--batch-size", str(batch_size)]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
        result = json.loads(Path(out.name).read_text())
    summary = f"{size} px (load {result['load_start']:.1f})"
    if path != "profile":
        summary += (
            f", {result['images']} images: {result['epoch_s']:.1f} s/epoch, "
            f"peak {result['peak_rss_mib']:.0f} MiB"
        )
    print(f"  {path:>7} {summary}", flush=True)
    return result


def phantoms(n: int, size: int) -> Path:
    """A phantom set of ``n`` images at ``size`` px under bench-runs/, generated once."""
    from pipeline.data import synth

    folder = BENCH_DIR / f"phantoms-{n}-{size}px"
    manifest = folder / synth.MANIFEST
    if not manifest.exists() or len(manifest.read_text().splitlines()) != n + 1:
        print(f"generating {n} phantoms at {size} px into {folder}", flush=True)
        synth.generate(folder, n, size=size, seed=0, progress=True)
    return folder


def preprocessing_times(data: Path, sizes: list[int]) -> dict:
    """Seconds to scan ``data`` and to preprocess it at each size: cold (empty cache), warm."""
    from pipeline.data import index_cache
    from pipeline.preprocessing import cache

    out: dict = {}
    for phase in ("cold", "warm"):
        t0 = time.perf_counter()
        index = index_cache.load_index(data, progress=phase == "cold")
        out[f"scan_{phase}_s"] = time.perf_counter() - t0
    for size in sizes:
        cfg = bench_config(data, size, augment=False)
        for phase in ("cold", "warm"):
            t0 = time.perf_counter()
            arrays = cache.cached_arrays(index, cfg.data, progress=phase == "cold")
            out[f"preprocess_{size}_{phase}_s"] = time.perf_counter() - t0
        out[f"cache_{size}_mib"] = arrays.nbytes / MiB
    out["images"] = len(index.records)
    return out


def _prep_table(prep: dict, data: Path, sizes: list[int]) -> Table:
    table = Table("step", "cold s", "warm s", title=f"scan and preprocess {data}")
    table.add_row(
        f"scan ({prep['images']} images, near-duplicate hashes)",
        f"{prep['scan_cold_s']:.2f}",
        f"{prep['scan_warm_s']:.3f}",
    )
    for size in sizes:
        table.add_row(
            f"preprocess to {size} px ({prep[f'cache_{size}_mib']:.0f} MiB uint8 cache)",
            f"{prep[f'preprocess_{size}_cold_s']:.2f}",
            f"{prep[f'preprocess_{size}_warm_s']:.3f}",
        )
    return table


def _profile_table(profiles: list[dict]) -> Table:
    table = Table("stage", title=f"one batch of {profiles[0]['batch_size']}, ms (wall / CPU)")
    for p in profiles:
        table.add_column(f"{p['size']} px (load {p['load_start']:.1f})")
    for stage in profiles[0]["stages"]:
        cells = [p["stages"][stage] for p in profiles]
        table.add_row(stage, *(f"{c['wall_ms']:.0f} / {c['cpu_ms']:.0f}" for c in cells))
    return table


def _speed_columns(table: Table) -> None:
    for column in ("s / epoch", "CPU s / epoch", "images / s", "CPU %", "peak RSS MiB", "anon MiB"):
        table.add_column(column)
    table.add_column("load")


def _speed_cells(r: dict) -> list[str]:
    return [
        f"{r['epoch_s']:.1f}",
        f"{r['epoch_cpu_s']:.1f}",
        f"{r['images_per_s']:.0f}",
        f"{r['cpu_percent']:.0f}",
        f"{r['peak_rss_mib']:.0f}",
        f"{r['peak_anon_mib']:.0f}",
        f"{r['load_start']:.1f}",
    ]


def _speed_table(results: list[dict], size: int) -> Table:
    by_path = {r["path"]: r for r in results if r["size"] == size}
    first = next(iter(by_path.values()))
    table = Table("path", title=f"{size} px, {first['images']} images, batch {first['batch_size']}")
    _speed_columns(table)
    for r in by_path.values():
        table.add_row(r["path"], *_speed_cells(r))
    if set(PATHS) <= by_path.keys():
        a, b, floor = (by_path[p]["epoch_s"] for p in PATHS)
        ca, cb, cfloor = (by_path[p]["epoch_cpu_s"] for p in PATHS)
        table.caption = (
            f"wall: A / B = {a / b:.2f}, B / floor = {b / floor:.2f}, A / floor = {a / floor:.2f}"
            f"; CPU: A / B = {ca / cb:.2f}, B / floor = {cb / cfloor:.2f}"
        )
    return table


def _scaling_table(results: list[dict], caches: dict[int, float]) -> Table:
    table = Table("images", "path", "cache MiB", title=f"scaling at {SCALING_SIZE} px (phantoms)")
    _speed_columns(table)
    for r in results:
        table.add_row(str(r["images"]), r["path"], f"{caches[r['images']]:.0f}", *_speed_cells(r))
    return table


def main() -> None:
    import tensorflow as tf

    from pipeline.config import preset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=str(SHARED / "tb-cxr"), help="one folder per class (phantoms if absent)"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224], help="image sides, px")
    parser.add_argument("--epochs", type=int, default=3, help="measured epochs, after a warm-up")
    parser.add_argument("--batch-size", type=int, default=preset("baseline").train.batch_size)
    parser.add_argument(
        "--scaling",
        type=int,
        nargs="*",
        default=[1000, 4000, 16000],
        help=f"phantom set sizes for the growth table at {SCALING_SIZE} px; none to skip it",
    )
    parser.add_argument("--scaling-paths", nargs="+", choices=PATHS, default=["B", "floor"])
    parser.add_argument("--no-profile", action="store_true", help="skip the per-stage timings")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 64 px, 1 epoch, small sets"
    )
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--worker", choices=[*PATHS, "profile"], help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        data, size = Path(args.data), args.sizes[0]
        if args.worker == "profile":
            result = profile(data, size, args.batch_size)
        else:
            result = measure(args.worker, data, size, args.epochs, args.batch_size)
        Path(args.worker_out).write_text(json.dumps(result))
        return
    if args.quick:  # smaller defaults; what was given on the command line is kept
        for name, value in {"sizes": [64], "epochs": 1, "scaling": [200, 400]}.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)

    BENCH_DIR.mkdir(exist_ok=True)
    data = Path(args.data)
    if not data.is_dir():
        print(f"{data} is absent: using 1000 phantoms at 512 px instead")
        data = phantoms(1000, 512)
    started = {"load": os.getloadavg(), "cores": os.cpu_count(), "time": time.ctime()}
    console = Console(width=140)
    console.print(
        f"{started['time']}: {started['cores']} cores, load average "
        + " / ".join(f"{x:.2f}" for x in started["load"])
        + f", TensorFlow {tf.__version__}, GPUs: {len(tf.config.list_physical_devices('GPU'))}"
    )

    with tempfile.TemporaryDirectory(dir=BENCH_DIR, prefix="cache-") as cache:
        os.environ["TBXRAY_CACHE_DIR"] = cache
        prep = preprocessing_times(data, args.sizes)
        profiles = [
            run_isolated("profile", data, size, args.epochs, args.batch_size)
            for size in ([] if args.no_profile else args.sizes)
        ]
        speed = [
            run_isolated(path, data, size, args.epochs, args.batch_size)
            for size in args.sizes
            for path in PATHS
        ]
        scaling, scaling_prep = [], {}
        for n in args.scaling:
            folder = phantoms(n, 256)
            scaling_prep[n] = preprocessing_times(folder, [SCALING_SIZE])
            scaling += [
                run_isolated(path, folder, SCALING_SIZE, args.epochs, args.batch_size)
                for path in args.scaling_paths
            ]

    console.print(_prep_table(prep, data, args.sizes))
    if profiles:
        console.print(_profile_table(profiles))
    for size in args.sizes:
        console.print(_speed_table(speed, size))
    if scaling:
        caches = {n: p[f"cache_{SCALING_SIZE}_mib"] for n, p in scaling_prep.items()}
        console.print(_scaling_table(scaling, caches))
    finished = os.getloadavg()
    console.print("load average at the end: " + " / ".join(f"{x:.2f}" for x in finished))
    if args.json:
        results = {
            "started": started,
            "load_end": finished,
            "preprocessing": prep,
            "profile": profiles,
            "speed": speed,
            "scaling": scaling,
            "scaling_preprocessing": scaling_prep,
        }
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
