"""The queue's side of retention: which finished tickets are old enough to prune, what was
pruned of each, removing finished tickets' rows, and giving the freed pages back.

Only a ticket that is finished *and* delivered is ever offered: its delivery was built from
its workspaces and archives, so nothing still needs them. A retry reopens a ticket (its
``finished_at`` and ``delivered_at`` go back to NULL), which takes it off the list at once.

Rows: a finished ticket's row goes with its tasks, attempts, edges, repository records and
events once ``SWARMD_RETENTION_TICKETS_DAYS`` have passed; until then it stays, and
``ticket_prunes`` says which kinds of its files were pruned, and when, for ``swarmd show``.
Ticket ids are never given twice (the ``counters`` table), so a removed ticket's id stays
unused.

The file: a database created by this version has ``auto_vacuum = INCREMENTAL`` (it can only
be set before the first table exists), and ``reclaim_space`` runs ``PRAGMA
incremental_vacuum`` after rows are removed, so the file shrinks. An older database has
``auto_vacuum = NONE``: its freed pages are reused by new rows, so it stops growing but does
not shrink, until ``convert_to_incremental`` (``swarmd prune --vacuum``, with the daemon
stopped) rewrites it once with ``VACUUM``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from swarmd.store.backend import Transaction
from swarmd.store.reads import StoreReads

FINISHED_TICKETS = """
    SELECT tickets.id, tickets.finished_at, tickets.delivered_at, ticket_prunes.kinds
    FROM tickets LEFT JOIN ticket_prunes ON ticket_prunes.ticket_id = tickets.id
    WHERE tickets.finished_at IS NOT NULL AND tickets.finished_at <= ?
      AND tickets.delivered_at IS NOT NULL
      AND tickets.state IN ('succeeded', 'failed', 'cancelled')
    ORDER BY tickets.id
"""

PRUNES_OF_TICKET = "SELECT kinds, at FROM ticket_prunes WHERE ticket_id = ?"

STILL_FINISHED = """
    SELECT id FROM tickets
    WHERE id = ? AND finished_at IS NOT NULL AND delivered_at IS NOT NULL
"""

RECORD_PRUNES = """
    INSERT INTO ticket_prunes (ticket_id, kinds, at) VALUES (?, ?, ?)
    ON CONFLICT (ticket_id) DO UPDATE SET kinds = excluded.kinds, at = excluded.at
"""

DELETE_FINISHED_TICKET = """
    DELETE FROM tickets
    WHERE id = ? AND finished_at IS NOT NULL AND finished_at <= ?
      AND delivered_at IS NOT NULL AND state IN ('succeeded', 'failed', 'cancelled')
    RETURNING id
"""

DELETE_EVENTS_OF_TICKET = "DELETE FROM events WHERE ticket_id = ?"


@dataclass(frozen=True, slots=True)
class FinishedTicket:
    """A finished, delivered ticket: when it finished and was delivered, what is pruned."""

    id: int
    finished_at: float
    delivered_at: float
    pruned: frozenset[str]


@dataclass(frozen=True, slots=True)
class PrunedFiles:
    """Which kinds of a ticket's files retention removed, and when it last removed some."""

    kinds: tuple[str, ...]
    at: float


@dataclass(frozen=True, slots=True)
class DatabaseSpace:
    """The database file's pages: its vacuum mode, and how many are free inside it."""

    auto_vacuum: str  # none | full | incremental
    page_size: int
    page_count: int
    free_pages: int

    @property
    def size_bytes(self) -> int:
        return self.page_size * self.page_count

    @property
    def free_bytes(self) -> int:
        return self.page_size * self.free_pages


_AUTO_VACUUM_MODES = {0: "none", 1: "full", 2: "incremental"}


class RetentionRecords(StoreReads):
    async def finished_tickets(self, *, finished_before: float) -> list[FinishedTicket]:
        """Every finished, delivered ticket that finished at or before ``finished_before``."""
        rows = await self._db.read(lambda txn: txn.fetch(FINISHED_TICKETS, (finished_before,)))
        return [
            FinishedTicket(
                id=int(row[0]),
                finished_at=float(row[1]),
                delivered_at=float(row[2]),
                pruned=frozenset(json.loads(row[3])) if row[3] else frozenset(),
            )
            for row in rows
        ]

    async def record_pruned(self, ticket_id: int, kinds: Iterable[str], *, at: float) -> bool:
        """Add ``kinds`` to what is pruned of ``ticket_id``; False if it is no longer
        finished (a retry reopened it meanwhile) or gone."""
        added = set(kinds)

        def record(txn: Transaction) -> bool:
            if txn.fetch_one(STILL_FINISHED, (ticket_id,)) is None:
                return False
            row = txn.fetch_one(PRUNES_OF_TICKET, (ticket_id,))
            known = set(json.loads(row[0])) if row is not None else set()
            txn.execute(RECORD_PRUNES, (ticket_id, json.dumps(sorted(known | added)), at))
            return True

        return await self._db.write(record, inline=True)

    async def pruned_files(self, ticket_id: int) -> PrunedFiles | None:
        """What retention removed of ``ticket_id``'s files; None when nothing."""
        row = await self._db.read(lambda txn: txn.fetch_one(PRUNES_OF_TICKET, (ticket_id,)))
        if row is None:
            return None
        return PrunedFiles(kinds=tuple(json.loads(row[0])), at=float(row[1]))

    async def remove_finished_tickets(
        self, ticket_ids: Sequence[int], *, finished_before: float
    ) -> list[int]:
        """Delete these tickets' rows (tasks, attempts, records and events with them), each
        only if it is still finished, delivered, and finished at or before
        ``finished_before``; returns the ids deleted."""

        def remove(txn: Transaction) -> list[int]:
            removed = []
            for ticket_id in ticket_ids:
                if txn.fetch_one(DELETE_FINISHED_TICKET, (ticket_id, finished_before)):
                    txn.execute(DELETE_EVENTS_OF_TICKET, (ticket_id,))
                    removed.append(ticket_id)
            return removed

        return await self._db.write(remove)

    async def database_space(self) -> DatabaseSpace:
        def read(txn: Transaction) -> DatabaseSpace:
            def number(pragma: str) -> int:
                row = txn.fetch_one(f"PRAGMA {pragma}")
                return int(row[0]) if row is not None else 0

            return DatabaseSpace(
                auto_vacuum=_AUTO_VACUUM_MODES.get(number("auto_vacuum"), "none"),
                page_size=number("page_size"),
                page_count=number("page_count"),
                free_pages=number("freelist_count"),
            )

        return await self._db.read(read)

    async def reclaim_space(self) -> int:
        """Give the free pages back to the file system when the file is incremental; the
        bytes given back (0 for an older file, whose free pages new rows reuse). A shared
        PostgreSQL database is its server's to keep: autovacuum does it."""
        if self._db.kind != "sqlite":
            return 0
        before = await self.database_space()
        if before.auto_vacuum != "incremental" or before.free_pages == 0:
            return 0
        await self._db.maintain("PRAGMA incremental_vacuum")
        # In WAL mode the file is truncated when the log is copied back into it.
        await self._db.maintain("PRAGMA wal_checkpoint(PASSIVE)")
        after = await self.database_space()
        return max(0, before.size_bytes - after.size_bytes)

    async def convert_to_incremental(self) -> int:
        """Rewrite the whole file once with ``VACUUM`` so it becomes incremental; the bytes
        it shrank by. It holds the write lock throughout: only with the daemon stopped.
        Nothing to do on PostgreSQL."""
        if self._db.kind != "sqlite":
            return 0
        before = await self.database_space()
        await self._db.maintain("PRAGMA auto_vacuum = INCREMENTAL")
        await self._db.maintain("VACUUM")
        await self._db.maintain("PRAGMA wal_checkpoint(TRUNCATE)")
        after = await self.database_space()
        return max(0, before.size_bytes - after.size_bytes)
