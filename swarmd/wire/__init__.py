"""What crosses a process boundary, each format with its encoder and decoder side by side.

    agent.py       an agent's definition, as the daemon resolves it and the worker runs it
    job.py         the job the daemon hands a worker, with the provider settings it carries
    result.py      the result a worker sends back, and how the daemon reads it
    report.py      what an attempt's result reports of its model calls: usage, cost, tries
    channel.py     the daemon <-> worker channel: JSON lines over a socketpair
    forkserver.py  the daemon <-> fork server records: spawn requests and their replies

Lean on purpose: both sides import it, and every worker pays its start-up.
"""
