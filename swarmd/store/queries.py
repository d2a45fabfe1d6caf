"""Every SQL statement of the store, by name.

Statements that take a caller's condition (``MOVE_TASKS``) are templates filled from the
named fragments below; no value is ever formatted into SQL, only ``?`` placeholders.
"""

from __future__ import annotations

from swarmd.models import ACTIVE_TASK_STATES

ACTIVE_STATES_SQL = ", ".join(f"'{state.value}'" for state in sorted(ACTIVE_TASK_STATES))

TASK_COLUMNS = """
    id, ticket_id, name, state, agent, prompt, command, needs, priority, max_attempts,
    failures, timeout_seconds, model, checks, retry_at, created_at, finished_at, last_error
"""

ATTEMPT_COLUMNS = """
    id, task_id, number, token, started_at, ended_at, pid, pid_create_time, exit_reason,
    error, result
"""

TICKET_COLUMNS = "id, title, state, priority, key, agent, plan, created_at, finished_at"

EVENT_COLUMNS = "id, at, ticket_id, task_id, kind, detail"

# -- moving tasks between states (see transitions.move_tasks) ---------------------------

MOVE_TASKS = """
    UPDATE tasks SET state = ?{sets}
    WHERE state IN ({from_states}) AND ({where})
    RETURNING {columns}
"""

WHERE_NEXT_READY = """
    id = (SELECT id FROM tasks WHERE state = 'ready' ORDER BY priority DESC, id LIMIT 1)
"""

WHERE_NEXT_READY_OF_TICKET = """
    id = (SELECT id FROM tasks WHERE state = 'ready' AND ticket_id = ?
          ORDER BY priority DESC, id LIMIT 1)
"""

WHERE_ID_IN = "id IN (SELECT value FROM json_each(?))"

WHERE_TICKET = "ticket_id = ?"

# Partial indexes are used only when the query names their state as a literal.
WHERE_RETRY_DUE = "state = 'failed' AND retry_at <= ?"

# -- submitting ---------------------------------------------------------------------------

TICKET_BY_KEY = "SELECT id, spec FROM tickets WHERE key = ?"

NEXT_TICKET_ID = """
    UPDATE counters SET value = MAX(value, (SELECT COALESCE(MAX(id), 0) FROM tickets)) + 1
    WHERE name = 'ticket_id'
    RETURNING value
"""

RAISE_TICKET_ID_FLOOR = "UPDATE counters SET value = MAX(value, ?) WHERE name = 'ticket_id'"

HIGHEST_TICKET_ID = """
    SELECT MAX(COALESCE((SELECT value FROM counters WHERE name = 'ticket_id'), 0),
               COALESCE((SELECT MAX(id) FROM tickets), 0))
"""

INSERT_TICKET = """
    INSERT INTO tickets (
        id, title, state, priority, key, agent, plan, prompt, model, spec, created_at
    )
    VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)
    RETURNING id
"""

INSERT_REPO_TICKET = "INSERT INTO repo_tickets (ticket_id, binding) VALUES (?, ?)"

INSERT_TASK = """
    INSERT INTO tasks (ticket_id, name, state, agent, prompt, command, needs, priority,
                       max_attempts, timeout_seconds, model, checks, pending_needs, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

TASK_IDS_OF_TICKET = "SELECT id, name, state FROM tasks WHERE ticket_id = ?"

INSERT_EDGE = "INSERT INTO edges (task_id, need_id) VALUES (?, ?)"

TICKET_FOR_UPDATE = "SELECT id, agent, priority, state FROM tickets WHERE id = ?"

# -- claiming and closing attempts --------------------------------------------------------

# Claiming picks the attempt's id inside the write transaction (no other writer can take
# it), so the attempt row can be written together with the verb's other writes.
CLAIM_SETS = """,
    started_at = COALESCE(started_at, ?),
    current_attempt_id = (SELECT COALESCE(MAX(id), 0) + 1 FROM attempts)
"""

CLAIM_RETURNING = """,
    current_attempt_id,
    (SELECT COALESCE(MAX(number), 0) + 1 FROM attempts WHERE task_id = tasks.id) AS attempt_number,
    (SELECT state FROM tickets WHERE id = tasks.ticket_id) AS ticket_state
"""

INSERT_ATTEMPT = """
    INSERT INTO attempts (id, task_id, number, token, started_at) VALUES (?, ?, ?, ?, ?)
"""

START_TICKET = "UPDATE tickets SET state = 'running', started_at = ? WHERE id = ?"

RECORD_SPAWN = """
    UPDATE attempts SET pid = ?, pid_create_time = ?
    WHERE id = ? AND token = ? AND ended_at IS NULL
    RETURNING id
"""

# The fencing check: the token (found through the attempt id it starts with, see
# ``attempt_id_of``) must name the open, current attempt of its task. It also
# answers what closing the attempt will need: does anything depend on this task, and does
# its ticket have other unfinished tasks.
CURRENT_ATTEMPT_BY_TOKEN = f"""
    SELECT a.id AS attempt_id, {", ".join(f"t.{c.strip()}" for c in TASK_COLUMNS.split(","))},
           EXISTS (SELECT 1 FROM edges WHERE need_id = t.id) AS has_dependents,
           EXISTS (SELECT 1 FROM tasks AS other
                   WHERE other.ticket_id = t.ticket_id AND other.id != t.id
                     AND other.state IN ({ACTIVE_STATES_SQL})) AS ticket_busy
    FROM attempts AS a JOIN tasks AS t ON t.id = a.task_id
    WHERE a.id = ? AND a.token = ? AND a.ended_at IS NULL AND t.current_attempt_id = a.id
"""

CLOSE_ATTEMPT = """
    UPDATE attempts SET ended_at = ?, exit_reason = ?, error = ?, result = ?
    WHERE id = ?
"""

CLOSE_OPEN_ATTEMPTS_OF_TASKS = """
    UPDATE attempts SET ended_at = ?, exit_reason = ?, error = ?
    WHERE ended_at IS NULL AND task_id IN (SELECT value FROM json_each(?))
"""

# -- the dependency graph -----------------------------------------------------------------

COUNT_DOWN_DEPENDENTS = """
    UPDATE tasks SET pending_needs = pending_needs - 1
    WHERE id IN (SELECT task_id FROM edges WHERE need_id = ?)
    RETURNING id, ticket_id, name, state, pending_needs
"""

DOWNSTREAM_TASKS = """
    WITH RECURSIVE downstream (id) AS (
        SELECT task_id FROM edges WHERE need_id IN (SELECT value FROM json_each(?))
        UNION
        SELECT edges.task_id FROM edges JOIN downstream ON edges.need_id = downstream.id
    )
    SELECT id, ticket_id, name, state FROM tasks WHERE id IN (SELECT id FROM downstream)
    ORDER BY id
"""

DOWNSTREAM_WITH_NEEDS = """
    WITH RECURSIVE downstream (id) AS (
        SELECT task_id FROM edges WHERE need_id = ?
        UNION
        SELECT edges.task_id FROM edges JOIN downstream ON edges.need_id = downstream.id
    )
    SELECT t.id, t.state,
           (SELECT json_group_array(e.need_id) FROM edges AS e WHERE e.task_id = t.id) AS need_ids
    FROM tasks AS t WHERE t.id IN (SELECT id FROM downstream)
    ORDER BY t.id
"""

NEEDS_OF_TASK = """
    SELECT n.id, n.name, n.state FROM edges AS e JOIN tasks AS n ON n.id = e.need_id
    WHERE e.task_id = ?
"""

_UNMET_NEEDS = """
    SELECT COUNT(*) FROM edges AS e JOIN tasks AS n ON n.id = e.need_id
    WHERE e.task_id = tasks.id AND n.state != 'succeeded'
"""

REVIVAL_CANDIDATES = f"""
    SELECT id, ticket_id, name, state, ({_UNMET_NEEDS}) AS unmet
    FROM tasks WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id
"""

RECOUNT_PENDING_NEEDS = f"""
    UPDATE tasks SET pending_needs = ({_UNMET_NEEDS})
    WHERE id IN (SELECT value FROM json_each(?))
"""

# -- tickets ------------------------------------------------------------------------------

TICKET_PROGRESS = f"""
    SELECT state, started_at,
           EXISTS (SELECT 1 FROM tasks
                   WHERE ticket_id = tickets.id AND state IN ({ACTIVE_STATES_SQL})) AS busy
    FROM tickets WHERE id = ?
"""

TASK_COUNTS_OF_TICKET = "SELECT state, COUNT(*) AS n FROM tasks WHERE ticket_id = ? GROUP BY state"

TASK_COUNTS_OF_TICKETS = """
    SELECT ticket_id, state, COUNT(*) AS n FROM tasks
    WHERE ticket_id IN (SELECT value FROM json_each(?))
    GROUP BY ticket_id, state
"""

# Any change of a ticket's state voids its delivery: a retried ticket is delivered anew.
SET_TICKET_STATE = "UPDATE tickets SET state = ?, finished_at = ?, delivered_at = NULL WHERE id = ?"

UNDELIVERED_TICKETS = """
    SELECT id FROM tickets WHERE finished_at IS NOT NULL AND delivered_at IS NULL ORDER BY id
"""

# Only the finish it was built for: a ticket retried meanwhile stays undelivered.
MARK_DELIVERED = """
    UPDATE tickets SET delivered_at = ?
    WHERE id = ? AND finished_at IS NOT NULL AND state = ?
    RETURNING id
"""

# A failure counts only if it came after the ticket's (last) finish.
TICKET_DELIVERY = """
    SELECT tickets.delivered_at,
           (SELECT events.detail FROM events
            WHERE events.ticket_id = tickets.id AND events.kind = 'delivery_failed'
              AND events.at >= tickets.finished_at
            ORDER BY events.id DESC LIMIT 1) AS failure
    FROM tickets WHERE tickets.id = ?
"""

# -- reading ------------------------------------------------------------------------------

TICKET_BY_ID = f"SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?"

TICKETS_NEWEST_FIRST = f"SELECT {TICKET_COLUMNS} FROM tickets ORDER BY id DESC LIMIT ?"

TICKETS_IN_STATE_NEWEST_FIRST = f"""
    SELECT {TICKET_COLUMNS} FROM tickets WHERE state = ? ORDER BY id DESC LIMIT ?
"""

TASKS_OF_TICKET = f"SELECT {TASK_COLUMNS} FROM tasks WHERE ticket_id = ? ORDER BY id"

TASK_BY_NAME = f"SELECT {TASK_COLUMNS} FROM tasks WHERE ticket_id = ? AND name = ?"


TASKS_BY_IDS = f"""
    SELECT {TASK_COLUMNS} FROM tasks WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id
"""

ATTEMPTS_OF_TASK = f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE task_id = ? ORDER BY number"

OPEN_ATTEMPTS = f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE ended_at IS NULL ORDER BY id"

CURRENT_TOKENS = """
    SELECT a.token FROM attempts AS a JOIN tasks AS t ON t.current_attempt_id = a.id
    WHERE a.id IN (SELECT value FROM json_each(?)) AND a.token IN (SELECT value FROM json_each(?))
      AND a.ended_at IS NULL AND t.state = 'running'
"""

QUEUE_DEPTH = "SELECT state, COUNT(*) AS n FROM tasks GROUP BY state"

NEXT_RETRY_AT = "SELECT MIN(retry_at) FROM tasks WHERE state = 'failed'"

# -- events and the daemon row ------------------------------------------------------------

INSERT_EVENT = "INSERT INTO events (at, ticket_id, task_id, kind, detail) VALUES (?, ?, ?, ?, ?)"

EVENTS_AFTER = f"SELECT {EVENT_COLUMNS} FROM events WHERE id > ? ORDER BY id LIMIT ?"

EVENTS_OF_TICKET_AFTER = f"""
    SELECT {EVENT_COLUMNS} FROM events WHERE ticket_id = ? AND id > ? ORDER BY id LIMIT ?
"""

WRITE_HEARTBEAT = """
    INSERT INTO daemon (id, pid, started_at, heartbeat_at, version, status)
    VALUES (1, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET
        pid = excluded.pid, started_at = excluded.started_at,
        heartbeat_at = excluded.heartbeat_at, version = excluded.version, status = excluded.status
"""

READ_HEARTBEAT = "SELECT pid, started_at, heartbeat_at, version, status FROM daemon WHERE id = 1"

CLEAR_HEARTBEAT = "DELETE FROM daemon WHERE pid = ?"
