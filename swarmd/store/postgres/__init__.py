"""The queue on PostgreSQL: several daemons, on several hosts, sharing one database.

``connection`` runs the store's verbs (the same code as on SQLite) on pooled connections,
``dialect`` turns the store's SQL into PostgreSQL's, ``schema`` holds the migrations,
``leases`` the statements that let a daemon own its running attempts for a while and let any
daemon take back what a dead one held, ``listener`` the ``LISTEN`` connection that wakes a
daemon when another host made work ready, and ``limits`` the fleet-wide rate limit.
"""
