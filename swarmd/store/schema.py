"""The database schema, as numbered migrations tracked by ``PRAGMA user_version``.

A migration is a list of statements run in one ``BEGIN IMMEDIATE`` transaction together with
the ``user_version`` bump, so a crash mid-migration leaves the previous version intact. To
change the schema, append a migration; never edit one that has shipped.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: tickets, tasks and their dependency edges, attempts, the event log, the daemon row.
    (
        """
        CREATE TABLE tickets (
            id          INTEGER PRIMARY KEY,
            title       TEXT    NOT NULL,
            state       TEXT    NOT NULL,
            priority    INTEGER NOT NULL DEFAULT 0,
            key         TEXT    UNIQUE,
            agent       TEXT    NOT NULL,
            plan        INTEGER NOT NULL DEFAULT 0,
            prompt      TEXT,
            model       TEXT,
            spec        TEXT    NOT NULL,
            created_at  REAL    NOT NULL,
            started_at  REAL,
            finished_at REAL
        )
        """,
        "CREATE INDEX tickets_by_state ON tickets (state, id)",
        """
        CREATE TABLE tasks (
            id                 INTEGER PRIMARY KEY,
            ticket_id          INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
            name               TEXT    NOT NULL,
            state              TEXT    NOT NULL,
            agent              TEXT    NOT NULL,
            prompt             TEXT,
            command            TEXT,
            needs              TEXT    NOT NULL DEFAULT '[]',
            priority           INTEGER NOT NULL DEFAULT 0,
            max_attempts       INTEGER NOT NULL,
            failures           INTEGER NOT NULL DEFAULT 0,
            timeout_seconds    REAL,
            model              TEXT,
            checks             TEXT    NOT NULL DEFAULT '[]',
            retry_at           REAL,
            pending_needs      INTEGER NOT NULL DEFAULT 0,
            created_at         REAL    NOT NULL,
            started_at         REAL,
            finished_at        REAL,
            last_error         TEXT,
            current_attempt_id INTEGER,
            UNIQUE (ticket_id, name)
        )
        """,
        # The claim and retry indexes are partial: they hold only the tasks a claim or a
        # retry release looks for, so a task's other state changes never write to them.
        "CREATE INDEX tasks_claim ON tasks (priority DESC, id) WHERE state = 'ready'",
        # `swarmd run-ticket` claims within one ticket.
        """
        CREATE INDEX tasks_claim_by_ticket ON tasks (ticket_id, priority DESC, id)
        WHERE state = 'ready'
        """,
        "CREATE INDEX tasks_by_ticket ON tasks (ticket_id, state)",
        "CREATE INDEX tasks_retry ON tasks (retry_at) WHERE state = 'failed'",
        """
        CREATE TABLE edges (
            task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
            need_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
            PRIMARY KEY (task_id, need_id)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX edges_by_need ON edges (need_id)",
        """
        CREATE TABLE attempts (
            id              INTEGER PRIMARY KEY,
            task_id         INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
            number          INTEGER NOT NULL,
            token           TEXT    NOT NULL UNIQUE,
            started_at      REAL    NOT NULL,
            ended_at        REAL,
            pid             INTEGER,
            pid_create_time REAL,
            exit_reason     TEXT,
            error           TEXT,
            result          TEXT,
            UNIQUE (task_id, number)
        )
        """,
        "CREATE INDEX attempts_open ON attempts (task_id) WHERE ended_at IS NULL",
        """
        CREATE TABLE events (
            id        INTEGER PRIMARY KEY,
            at        REAL    NOT NULL,
            ticket_id INTEGER,
            task_id   INTEGER,
            kind      TEXT    NOT NULL,
            detail    TEXT    NOT NULL DEFAULT '{}'
        )
        """,
        "CREATE INDEX events_by_ticket ON events (ticket_id, id)",
        """
        CREATE TABLE daemon (
            id           INTEGER PRIMARY KEY CHECK (id = 1),
            pid          INTEGER NOT NULL,
            started_at   REAL    NOT NULL,
            heartbeat_at REAL    NOT NULL,
            version      TEXT    NOT NULL,
            status       TEXT    NOT NULL DEFAULT '{}'
        )
        """,
    ),
    # 2: fewer index writes per claim and completion. The fencing token starts with its
    # attempt's id ("<id>.<secret>") and is checked on the row found by that id, so it needs
    # no index of its own (it was a random-order one, the costliest of a claim's writes);
    # the per-ticket claim index folds into the ticket/state index.
    (
        """
        CREATE TABLE attempts_v2 (
            id              INTEGER PRIMARY KEY,
            task_id         INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
            number          INTEGER NOT NULL,
            token           TEXT    NOT NULL,
            started_at      REAL    NOT NULL,
            ended_at        REAL,
            pid             INTEGER,
            pid_create_time REAL,
            exit_reason     TEXT,
            error           TEXT,
            result          TEXT,
            UNIQUE (task_id, number)
        )
        """,
        """
        INSERT INTO attempts_v2
        SELECT id, task_id, number, id || '.' || token, started_at, ended_at, pid,
               pid_create_time, exit_reason, error, result
        FROM attempts
        """,
        "DROP TABLE attempts",
        "ALTER TABLE attempts_v2 RENAME TO attempts",
        "CREATE INDEX attempts_open ON attempts (task_id) WHERE ended_at IS NULL",
        "DROP INDEX tasks_claim_by_ticket",
        "DROP INDEX tasks_by_ticket",
        # `swarmd run-ticket` claims within one ticket: (ticket_id, 'ready') then priority.
        "CREATE INDEX tasks_by_ticket ON tasks (ticket_id, state, priority DESC, id)",
    ),
    # 3: when a finished ticket's delivery was written. A ticket that finished with none is
    # found at start-up (a daemon that died in between) and delivered then. Tickets that
    # finished before this version are taken as delivered: their daemon delivered them.
    # And the highest ticket id ever given, so that no id is given twice: not after its
    # ticket's row is deleted, nor after a restored backup (which raises it past the ids
    # the home's files name).
    (
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
        "INSERT INTO counters (name, value) SELECT 'ticket_id', COALESCE(MAX(id), 0) FROM tickets",
        # Tickets that work on a repository: which one, from which pinned commit, delivered
        # how; and each task's result commit, recorded before it is merged so that a daemon
        # that dies between the two completes the merge instead of losing the commit.
        """
        CREATE TABLE repo_tickets (
            ticket_id    INTEGER PRIMARY KEY REFERENCES tickets (id) ON DELETE CASCADE,
            binding      TEXT    NOT NULL,
            head_commit  TEXT,
            pull_request TEXT
        )
        """,
        """
        CREATE TABLE task_commits (
            task_id    INTEGER PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
            attempt_id INTEGER NOT NULL,
            commit_id  TEXT    NOT NULL,
            merged     INTEGER NOT NULL DEFAULT 0
        )
        """,
        "ALTER TABLE tickets ADD COLUMN delivered_at REAL",
        "UPDATE tickets SET delivered_at = finished_at WHERE finished_at IS NOT NULL",
        """
        CREATE INDEX tickets_undelivered ON tickets (id)
        WHERE finished_at IS NOT NULL AND delivered_at IS NULL
        """,
    ),
    # 4: retention. Which kinds of a finished ticket's files were pruned, and when, so that
    # `swarmd show` can say the files are gone on purpose; and the finished tickets by the
    # time they finished, which is what every retention limit counts from.
    (
        """
        CREATE TABLE ticket_prunes (
            ticket_id INTEGER PRIMARY KEY REFERENCES tickets (id) ON DELETE CASCADE,
            kinds     TEXT    NOT NULL,
            at        REAL    NOT NULL
        )
        """,
        "CREATE INDEX tickets_by_finish ON tickets (finished_at) WHERE finished_at IS NOT NULL",
    ),
)

LATEST_VERSION = len(MIGRATIONS)
"""The schema version this code writes; a file with a higher one is refused."""
