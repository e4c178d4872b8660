"""Commands about the queue: ``enqueue``, ``worker``, ``cancel``, ``suites``, ``suite``, the
store's schema (``db``) and ``up``."""

from __future__ import annotations

import argparse
import json

from rich.table import Column, Table

from pipeline import formats
from pipeline.cli.common import build_config, config_overrides, console, open_store


def cmd_enqueue(args: argparse.Namespace) -> int:
    from pipeline.experiments import plan, suites

    store = open_store()
    if not (args.suite or args.suite_file):
        cfg = build_config(args)
        run = store.create_run(json.loads(cfg.to_json()), name=cfg.name)
        console.print(
            f"queued run {run.id} ({run.name}); start a worker: python -m pipeline worker"
        )
        return 0
    if args.suite_file:
        spec = plan.load_suite_file(args.suite_file)
    elif args.suite in suites.SUITES:
        spec = suites.SUITES[args.suite]
    else:
        raise ValueError(
            f"unknown suite {args.suite!r}; choose one of {', '.join(suites.SUITES)} "
            "or pass --suite-file"
        )
    overrides = config_overrides(args)
    data_path = overrides.pop("data.path", "data/phantoms")
    planned = plan.expand(
        spec,
        data_path=data_path,
        seeds=args.seeds,
        max_runs=args.max_runs,
        mode="grid" if args.grid else None,
        overrides=overrides,
    )
    missing = plan.missing_folders(planned)
    if missing:
        raise ValueError("\n".join(missing))
    suite, runs = plan.enqueue(store, spec, planned)
    console.print(
        f"queued suite {suite.id} ({spec.name}: {spec.question}) with {len(runs)} runs; start "
        f"workers with `python -m pipeline worker`, then `python -m pipeline suite {suite.id}`"
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from pipeline.runs.worker import WorkerOptions, work

    options = WorkerOptions(
        once=args.once,
        max_runs=args.max_runs,
        heartbeat_s=args.heartbeat,
        stale_after_s=args.stale_after,
        requeue=args.requeue,
        poll_s=args.poll,
        requeue_on_stop=not args.fail_on_stop,
        **({"name": args.name} if args.name else {}),
    )
    store = open_store()
    console.print(f"worker {options.name} on {store.url}")
    work(store, options)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from db import RunNotFound

    store = open_store()
    try:
        run = store.get_run(args.id)
    except RunNotFound as err:
        if err.matches:
            raise
        cancelled = store.cancel_suite(args.id)
        console.print(f"suite {args.id}: {len(cancelled)} queued or running runs cancelled")
        return 0
    run = store.cancel_run(run.id)
    console.print(
        f"run {run.id} cancelled; a running run stops at its next batch and keeps its epochs"
    )
    return 0


# ------------------------------------------------------------------------------------------- db
def cmd_db(args: argparse.Namespace) -> int:
    from db import default_url, make_engine, migrate

    url = default_url()
    engine = make_engine(url)
    where = engine.url.render_as_string(hide_password=True)
    if args.action == "current":
        console.print(f"run store {where}: {migrate.state(engine).describe()}")
        return 0
    if args.action == "upgrade":
        saved = migrate.upgrade(engine, args.revision or "head")
    else:
        if not args.revision:
            raise ValueError("db downgrade needs a target revision (e.g. 0001), or 'base'")
        saved = migrate.downgrade(engine, args.revision)
    kept = f"; the previous file is kept at {saved}" if saved else ""
    console.print(f"run store {where}: now {migrate.state(engine).describe()}{kept}")
    return 0


# ------------------------------------------------------------------------------- suites, suite
def cmd_suites(args: argparse.Namespace) -> int:
    from pipeline.experiments import plan, suites

    table = Table("suite", "runs", "question", title="preset suites (enqueue --suite NAME)")
    for name, spec in suites.SUITES.items():
        table.add_row(name, str(len(plan.expand(spec, data_path="."))), spec.question)
    console.print(table)
    store = open_store()
    launched = store.list_suites()
    if launched:
        table = Table(
            Column("id", no_wrap=True), "name", "created", "runs", "done", title="launched suites"
        )
        for suite in launched:
            runs = store.list_runs(suite_id=suite.id)
            done = sum(r.status in ("succeeded", "failed", "cancelled") for r in runs)
            table.add_row(
                suite.id,
                suite.name,
                f"{suite.created_at:%Y-%m-%d %H:%M}",
                str(len(runs)),
                str(done),
            )
        console.print(table)
    return 0


def cmd_suite(args: argparse.Namespace) -> int:
    from pipeline.experiments import summary
    from pipeline.runs.manage import suite_progress

    store = open_store()
    suite = store.get_suite(args.suite_id)
    p = suite_progress(store.list_runs(suite_id=suite.id))
    left = f", about {formats.duration(p.seconds_left)} left" if p.seconds_left is not None else ""
    console.print(
        f"{p.done} of {p.total} done ({p.succeeded} succeeded, {p.failed} failed, {p.cancelled} "
        f"cancelled), {p.running} running, {p.queued} queued{left}"
        + ("" if p.finished else f"; cancel the rest: python -m pipeline cancel {suite.id}")
    )
    console.print(summary.format_summary(summary.summary(store, suite.id)), markup=False)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from pipeline.cli import up

    return up.up(up.services(args.dashboard_port, args.public_port, worker=not args.no_worker))
