"""Benchmark: how fast concurrent workers claim queued runs, and whether any run is claimed twice.

    .venv/bin/python -m bench.queue [--runs 1000] [--claimers 1,4,16] [--pg-url URL] [--json F]

For each database (a SQLite file; PostgreSQL: ``--pg-url`` to a server you run, else a
throwaway cluster started with the project's test helper) and each number of claimers, a fresh
store gets ``--runs`` queued runs; that many processes then call ``RunStore.claim_next`` until
the queue is empty (no training). Reported: claims per second over the whole drain (first claim
to last), and double claims (claims minus distinct runs claimed; must be 0), with a check that
every run was claimed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path


def _claimer(url: str, name: str, start: mp.Event, out: mp.Queue) -> None:
    from db import RunStore

    store = RunStore(url)
    claimed = []
    start.wait()
    while (run := store.claim_next(name)) is not None:
        claimed.append(run.id)
    out.put((name, claimed, time.perf_counter()))


def drain(url: str, runs: int, claimers: int) -> dict:
    """Queue ``runs`` runs in the store at ``url``, drain them with ``claimers`` processes."""
    from db import RunStore

    store = RunStore(url)
    ids = [store.create_run({"seed": i}, name=f"q{i}").id for i in range(runs)]
    start, out = mp.Event(), mp.Queue()
    procs = [mp.Process(target=_claimer, args=(url, f"c{i}", start, out)) for i in range(claimers)]
    for p in procs:
        p.start()
    time.sleep(2.0)  # every claimer has opened its store and waits at the start line
    began = time.perf_counter()
    start.set()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    ended = max(finished for _, _, finished in results)
    claims = [run_id for _, claimed, _ in results for run_id in claimed]
    return {
        "claimers": claimers,
        "runs": runs,
        "claims": len(claims),
        "double_claims": len(claims) - len(set(claims)),
        "unclaimed": len(set(ids) - set(claims)),
        "seconds": round(ended - began, 3),
        "claims_per_s": round(len(claims) / (ended - began), 1),
    }


def _postgres_database(base: str) -> str:
    from sqlalchemy import create_engine, text

    from db import make_engine, migrate

    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = f"{base}/{name}"
    migrate.upgrade(make_engine(url))
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--claimers", default="1,4,16", help="comma-separated counts")
    parser.add_argument("--pg-url", help="a PostgreSQL server's base URL (default: throwaway)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    counts = [int(c) for c in args.claimers.split(",")]

    rows = []
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for n in counts:
            url = f"sqlite:///{folder / f'queue-{n}.db'}"
            rows.append({"database": "SQLite", **drain(url, args.runs, n)})
        base = args.pg_url
        if base is None:
            from tests.pgserver import throwaway_postgres

            base = stack.enter_context(throwaway_postgres())
        for n in counts:
            rows.append({"database": "PostgreSQL", **drain(_postgres_database(base), args.runs, n)})

    print("| database | claimers | claims/s | double claims | unclaimed | drain time |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['database']} | {r['claimers']} | {r['claims_per_s']:.0f} | "
            f"{r['double_claims']} | {r['unclaimed']} | {r['seconds']:.1f} s |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
