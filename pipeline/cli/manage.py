"""Commands that manage runs: ``archive``, ``delete``, ``tag``, ``note``; and a suite's progress."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from pipeline.cli.common import console, err_console, open_store


def cmd_archive(args: argparse.Namespace) -> int:
    store = open_store()
    run = store.archive_run(store.get_run(args.run_id).id, archived=not args.undo)
    if args.undo:
        console.print(f"run {run.id} ({run.name}) restored: the leaderboard shows it again")
    else:
        console.print(
            f"run {run.id} ({run.name}) archived: hidden from the leaderboard and `runs` unless "
            f"archived runs are shown; undo with `python -m pipeline archive {run.id} --undo`"
        )
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from pipeline.runs.manage import delete_run

    store = open_store()
    run = store.get_run(args.run_id)
    if not args.yes:
        answer = _ask(
            f"Delete run {run.id} ({run.name}, {run.status}) with its artifacts and log for "
            "good? Type its id to confirm: "
        )
        if answer.strip() != run.id:
            err_console.print("nothing deleted: the id was not typed")
            return 1
    run, removed = delete_run(store, run.id)
    files = ", ".join(str(p) for p in removed) or "no files"
    console.print(f"run {run.id} ({run.name}) deleted, with {files}")
    return 0


def _ask(prompt: str) -> str:
    try:
        return input(prompt)
    except EOFError:
        return ""


def cmd_tag(args: argparse.Namespace) -> int:
    store = open_store()
    run = store.get_run(args.run_id)
    tags = set(run.tags) - set(args.remove) | set(args.tags)
    run = store.set_tags(run.id, tags)
    console.print(f"run {run.id} tags: {', '.join(run.tags) or 'none'}")
    return 0


def cmd_note(args: argparse.Namespace) -> int:
    store = open_store()
    run = store.set_note(store.get_run(args.run_id).id, args.text)
    console.print(f"run {run.id} note: {run.note or '(none)'}", markup=False)
    return 0


def add_parsers(
    add: Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser],
) -> None:
    """Register the commands above with ``add(name, fn, help)`` from :mod:`pipeline.cli`."""
    p = add("archive", cmd_archive, "hide a finished run from the leaderboard (--undo restores)")
    p.add_argument("run_id")
    p.add_argument("--undo", action="store_true", help="restore an archived run")

    p = add(
        "delete",
        cmd_delete,
        "delete a finished run, its artifacts and log for good (not one queued, running or served)",
    )
    p.add_argument("run_id")
    p.add_argument("--yes", action="store_true", help="do not ask to type the id to confirm")

    p = add("tag", cmd_tag, "add (or --remove) tags of a run")
    p.add_argument("run_id")
    p.add_argument("tags", nargs="*", help="tags to add")
    p.add_argument("--remove", nargs="+", default=[], metavar="TAG", help="tags to remove")

    p = add("note", cmd_note, "set a run's free-text note ('' clears it)")
    p.add_argument("run_id")
    p.add_argument("text")
