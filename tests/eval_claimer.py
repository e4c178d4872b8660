"""A claimer of evaluation jobs that scores nothing, for the queue tests:
``python -m tests.eval_claimer``.

It claims queued jobs with the store's own ``claim_next_eval`` until none is left. Each claimed
job heart-beats and reports progress for ``--seconds``, then succeeds with a placeholder
evaluation; a line ``evaluating job <id>`` is printed at each claim.
"""

from __future__ import annotations

import argparse
import time

from db import RunStore


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--seconds", type=float, default=0.0)
    args = parser.parse_args()
    store = RunStore()
    while (job := store.claim_next_eval(args.name)) is not None:
        print(f"evaluating job {job.id}", flush=True)
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            store.heartbeat_eval(job.id)
            time.sleep(0.05)
        store.eval_progress(job.id, 1, 1)
        result = store.add_external_eval(
            job.run_id,
            dataset_path=job.dataset_path,
            data_fingerprint="-",
            metrics={"n": 1, "auc": 0.5},
        )
        store.finish_eval_job(job.id, result.id)


if __name__ == "__main__":
    main()
