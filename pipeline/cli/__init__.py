"""``python -m pipeline``: make data, inspect it, train, list runs, evaluate, calibrate, predict,
explain, manage runs (archive, delete, tag, note), run the queue, and the lung segmenter
(``lungs``, in :mod:`pipeline.cli.lungs`).

Each command lives in the module of its concern (``data``, ``runs``, ``manage``, ``queue``,
``sites``); this one builds the parser and turns user errors into one line. Heavy modules
(TensorFlow) are imported inside the commands that need them, so ``--help`` and the store
commands answer at once. Errors in what the user typed or pointed at are printed as one clear
line (exit status 2), never as a traceback.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence

from pipeline.cli import data, manage, queue, runs, sites
from pipeline.cli.common import config_flags, err_console


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="TB X-ray Lab: train and compare chest X-ray TB classifiers.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, fn: Callable[[argparse.Namespace], int], help_: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(fn=fn)
        return p

    p = add(
        "synth",
        data.cmd_synth,
        "make the phantom dataset (chest-like images, TB lesions with masks)",
    )
    p.add_argument("--out", default="data/phantoms", help="output folder (default: data/phantoms)")
    p.add_argument("--n", type=int, default=600, help="number of images (default 600)")
    p.add_argument("--tb-ratio", type=float, default=5.0, help="normal : TB ratio (default 5)")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    p.add_argument("--seed", type=int, default=0)

    p = add(
        "inspect",
        data.cmd_inspect,
        "counts, sizes, modes, bad files and near-duplicates of a dataset",
    )
    p.add_argument(
        "--data",
        required=True,
        nargs="+",
        action="extend",
        metavar="FOLDER",
        help="dataset folder; several: images per source and class, and the radiographs they share",
    )
    p.add_argument("--label-map", help="class folders to labels, e.g. healthy=0,tb=1")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--lungs", action="store_true", help="segment every image; list implausible lung masks"
    )

    p = add(
        "intensity-reference",
        data.cmd_intensity_reference,
        "make the reference grey-level distribution of data.intensity=hist_match",
    )
    p.add_argument("--data", required=True, help="dataset folder the reference comes from")
    p.add_argument(
        "--out",
        help="where to write it (default: the reference shipped in pipeline/preprocessing/)",
    )
    p.add_argument("--size", type=int, default=128, help="image side it is measured at")

    p = add("train", runs.cmd_train, "train and evaluate one run now, in this process")
    config_flags(p)
    p.add_argument(
        "--loso",
        action="store_true",
        help="then leave each of its sources out in turn (`loso`): its figure on hospitals it "
        "did not train on",
    )

    p = add(
        "loso",
        runs.cmd_loso,
        "a run's recipe on hospitals it did not train on: each source held out in turn, trained "
        "on the others, figures stored with the run",
    )
    p.add_argument("run_id")
    p.add_argument(
        "--retrain",
        action="store_true",
        help="train every fold again, even where a run of the same config is in the store",
    )

    p = add(
        "enqueue", queue.cmd_enqueue, "queue one run, or a whole experiment suite, for the workers"
    )
    config_flags(p)
    p.add_argument("--suite", help="a preset suite (see `suites`), e.g. pooling")
    p.add_argument("--suite-file", help="a custom suite in YAML or JSON")
    p.add_argument("--seeds", type=int, default=1, help="repeat each setting over N seeds")
    p.add_argument("--max-runs", type=int, help="at most N settings (random search cap)")
    p.add_argument("--grid", action="store_true", help="all combinations of the suite's factors")

    p = add(
        "worker", queue.cmd_worker, "claim queued runs and train them (several may run at once)"
    )
    p.add_argument("--once", action="store_true", help="drain the queue, then exit")
    p.add_argument("--max-runs", type=int, help="exit after N runs")
    p.add_argument("--name", help="worker name (default host:pid)")
    p.add_argument("--heartbeat", type=float, default=10.0, help="seconds between heartbeats")
    p.add_argument(
        "--stale-after", type=float, default=120.0, help="a run silent this long has a dead worker"
    )
    p.add_argument(
        "--requeue",
        action="store_true",
        help="re-queue dead runs and evaluations instead of failing them",
    )
    p.add_argument(
        "--poll", type=float, default=5.0, help="seconds between looks at an empty queue"
    )
    p.add_argument(
        "--fail-on-stop",
        action="store_true",
        help="when told to stop (SIGTERM, Ctrl-C), mark the running run failed instead of "
        "re-queueing it",
    )

    p = add("db", queue.cmd_db, "the run store's schema: which revision it is at, and upgrades")
    p.add_argument("action", choices=["current", "upgrade", "downgrade"])
    p.add_argument(
        "revision",
        nargs="?",
        help="upgrade: target (default the newest); downgrade: target revision, or 'base'",
    )

    p = add("cancel", queue.cmd_cancel, "cancel a run, or every unfinished run of a suite")
    p.add_argument("id", help="run id (or prefix) or suite id")

    add("suites", queue.cmd_suites, "the preset experiment suites and the suites launched")
    p = add(
        "suite",
        queue.cmd_suite,
        "a suite's progress and per-setting summary: mean ± std, best marked",
    )
    p.add_argument("suite_id")

    p = add("runs", runs.cmd_runs, "table of runs in the store")
    p.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--archived", action="store_true", help="also list archived runs")
    p.add_argument(
        "--kind",
        choices=["train", "pretrain", "all"],
        default="train",
        help="classifier runs (train, default), pretraining runs, or all",
    )
    manage.add_parsers(add)

    p = add("show", runs.cmd_show, "one run: metrics, epochs, external evaluations, error")
    p.add_argument("run_id")
    p.add_argument("--config", action="store_true", help="also print the run's config")

    p = add("evaluate", runs.cmd_evaluate, "external validation of a run on another dataset folder")
    p.add_argument("run_id")
    p.add_argument("--data", required=True, help="dataset folder")

    p = add(
        "calibrate",
        sites.cmd_calibrate,
        "choose a run's threshold for a site on part of its labelled images, check it on the rest",
    )
    p.add_argument("run_id")
    p.add_argument("--data", required=True, help="the site's labelled images (a dataset folder)")
    p.add_argument("--site", required=True, help="the site's name, e.g. 'District clinic A'")
    p.add_argument(
        "--prevalence", type=float, required=True, help="TB prevalence among those screened"
    )
    p.add_argument(
        "--check-fraction", type=float, default=0.5, help="share kept for checking (0.5)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    p.add_argument("--rows", type=int, default=15, help="rows of the threshold table shown")

    p = add(
        "adapt",
        sites.cmd_adapt,
        "adapt a run to a site from its unlabelled X-rays (AdaBN), stored as a new run",
    )
    p.add_argument("run_id")
    p.add_argument("--data", required=True, help="the site's X-rays (labels not needed)")

    p = add("calibrations", sites.cmd_calibrations, "a run's stored site calibrations")
    p.add_argument("run_id")

    p = add("promote", sites.cmd_promote, "make a run the one the public app serves")
    p.add_argument("run_id", help="a run id (or its start), or a name: its newest succeeded run")
    p.add_argument("--calibration", type=int, help="serve this site calibration's threshold")
    p.add_argument("--note", default="", help="why (shown in the promotion history)")
    p.add_argument("--by", help="who promotes it (default: your login name)")

    p = add(
        "predict", runs.cmd_predict, "TB probability and verdict for images, with a run's model"
    )
    p.add_argument("run_id")
    p.add_argument("images", nargs="+", help="PNG or JPEG files")

    p = add("explain", runs.cmd_explain, "heatmaps of what drove a run's verdict on one image")
    p.add_argument("run_id")
    p.add_argument("image", help="a PNG or JPEG file")
    p.add_argument(
        "--method", choices=["gradcam", "lime", "shap", "all"], default="all", help="default all"
    )
    p.add_argument("--out", default="explanations", help="output folder (default explanations)")
    p.add_argument("--lime-samples", type=int, default=1000, help="LIME samples (default 1000)")
    p.add_argument("--shap-evals", type=int, default=500, help="SHAP evaluations (default 500)")

    from pipeline.cli.lungs import add_parser as add_lungs

    add_lungs(sub)

    from pipeline.cli.pretrain import add_parser as add_pretrain

    add_pretrain(sub)

    p = add("up", queue.cmd_up, "start the dashboard, the public app and a worker until Ctrl-C")
    p.add_argument("--dashboard-port", type=int, default=8501, help="default 8501")
    p.add_argument("--public-port", type=int, default=7860, help="default 7860")
    p.add_argument("--no-worker", action="store_true", help="start no worker")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for a user error, printed as one line)."""
    from sqlalchemy.exc import SQLAlchemyError

    from db import StoreError
    from pipeline.config import ConfigError
    from pipeline.data.layouts import DatasetLayoutError
    from pipeline.imaging.decoded import ImageError

    args = _parser().parse_args(argv)
    try:
        return args.fn(args)
    except SQLAlchemyError as err:
        err_console.print(
            f"[red]error:[/red] the run store at {os.environ.get('TBXRAY_DB_URL', 'runs/')} "
            f"failed: {err.__class__.__name__}: {err.orig if hasattr(err, 'orig') else err}; "
            "check TBXRAY_DB_URL and that the database is reachable"
        )
    except (
        ConfigError,
        DatasetLayoutError,
        ImageError,
        StoreError,
        OSError,
        ValueError,
    ) as err:
        err_console.print(f"[red]error:[/red] {err}")
    return 2
