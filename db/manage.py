"""Run management: archive and restore runs, tag and annotate them, and delete them for good.

An archived run keeps every row and file; only the leaderboard hides it until it is restored.
Deleting removes the run's rows (epochs, external evaluations, calibrations and promotions go
with it); its files are the caller's to remove (:func:`pipeline.runs.manage.delete_run`). A run that
is queued or running, or that the public app serves, is refused with a sentence saying why.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.base import not_found, touch
from db.errors import StoreError
from db.models import PromotionRow, RunRow
from db.records import Run, run_record, utc_now
from db.serving import ServingMixin

ACTIVE = ("queued", "running")
MAX_TAG = 40


def clean_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Tags as stored: stripped, empty ones dropped, duplicates once, sorted.

    Raises ValueError for a tag longer than ``MAX_TAG`` characters or one with a comma, which
    separates tags where they are typed.
    """
    cleaned = {t.strip() for t in tags} - {""}
    for tag in cleaned:
        if "," in tag or len(tag) > MAX_TAG:
            raise ValueError(f"tag {tag!r}: a tag is at most {MAX_TAG} characters, without commas")
    return tuple(sorted(cleaned))


class ManageMixin(ServingMixin):
    """Archiving, tags, notes and deletion of :class:`db.store.RunStore`."""

    def archive_run(self, run_id: str, archived: bool = True) -> Run:
        """Archive the run (hidden from the leaderboard) or, with ``archived=False``, restore it.

        Raises StoreError for a run that is queued or running (cancel it first) or, when
        archiving, for the run the public app serves. Archiving an archived run keeps its date.
        """
        with self.session() as s:
            row = _row(s, run_id)
            if archived:
                self._refuse_if_busy_or_served(row, "archive")
                if row.archived_at is None:
                    row.archived_at = utc_now()
            else:
                row.archived_at = None
            s.flush()
            return run_record(row)

    def set_tags(self, run_id: str, tags: Iterable[str]) -> Run:
        """Replace the run's tags (see :func:`clean_tags`); any run, whatever its status."""
        cleaned = clean_tags(tags)
        with self.session() as s:
            touch(s, run_id, tags_json=json.dumps(list(cleaned)))
            return run_record(s.get_one(RunRow, run_id, populate_existing=True))

    def set_note(self, run_id: str, note: str) -> Run:
        """Replace the run's free-text note (surrounding blanks dropped)."""
        with self.session() as s:
            touch(s, run_id, note=note.strip())
            return run_record(s.get_one(RunRow, run_id, populate_existing=True))

    def discard_run(self, run_id: str) -> Run:
        """Delete the run's rows and return the run as it was (its ``artifacts_dir`` included).

        Raises StoreError, deleting nothing, for a run that is queued or running or that the
        public app serves; RunNotFound for an unknown id.
        """
        with self.session() as s:
            row = _row(s, run_id)
            self._refuse_if_busy_or_served(row, "delete")
            gone = run_record(row)
            result = s.execute(
                delete(RunRow).where(RunRow.id == row.id, RunRow.status.not_in(ACTIVE)),
                execution_options={"synchronize_session": False},
            )
            if result.rowcount == 0:  # started or re-queued since it was read
                raise StoreError(f"cannot delete run {row.id}: it was queued again meanwhile")
            return gone

    def refusal(self, run_id: str, action: str) -> str | None:
        """Why the run cannot be archived or deleted (``action``) now, or None when it can."""
        with self.session() as s:
            return self._refusal(_row(s, run_id), action)

    def _refusal(self, row: RunRow, action: str) -> str | None:
        if row.status in ACTIVE:
            return (
                f"cannot {action} run {row.id}: it is {row.status}; cancel it first "
                f"(python -m pipeline cancel {row.id})"
            )
        served = self.served_run()
        if served is not None and served.id == row.id:
            return (
                f"cannot {action} run {row.id}: it is the model the public app serves; promote "
                "another run first"
            )
        if action == "delete":
            query = select(PromotionRow).where(PromotionRow.run_id == row.id)
            with self.session() as s:
                promoted = s.scalars(query.order_by(PromotionRow.promoted_at.desc())).first()
                last = None if promoted is None else (promoted.promoted_at, promoted.promoted_by)
            if last is not None:
                who = f" by {last[1]}" if last[1] else ""
                return (
                    f"cannot delete run {row.id}: it was served to the public (promoted "
                    f"{last[0]:%Y-%m-%d}{who}), and the record of what was served is kept; "
                    "archive it instead"
                )
        return None

    def _refuse_if_busy_or_served(self, row: RunRow, action: str) -> None:
        why = self._refusal(row, action)
        if why is not None:
            raise StoreError(why)


def _row(s: Session, run_id: str) -> RunRow:
    row = s.get(RunRow, run_id)
    if row is None:
        raise not_found(run_id)
    return row
