"""The durable queue of tickets and tasks, on SQLite or (for a fleet) PostgreSQL.

``Store`` is the public face: its verbs take and return the models of ``swarmd.models``.
Inside: ``backend`` (what a verb needs of a database: the contract both backends keep),
``schema`` (SQLite's migrations), ``queries`` (the SQL, by name), ``database`` (SQLite's
connections, transactions, error translation), ``postgres`` (the same verbs on PostgreSQL,
with leases, wake-ups and the fleet's rate buckets), ``transitions`` (the checked state
changes and their effects along the dependency graph), ``dag`` (validating new task
graphs), ``reads`` (the read-only verbs), ``ticket_writes`` (submit, add tasks, cancel,
retry), ``rows`` (rows to models), ``backoff`` (retry delays), ``stats`` (figures for status
and metrics) and ``backup`` (online backup, checks and restore: SQLite's file only).
"""

from swarmd.store.store import Store

__all__ = ["Store"]
