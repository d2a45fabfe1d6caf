"""What runs in the daemon process (``swarmd run``, and ``run-ticket`` with no daemon).

serve.py        the composition root: settings in, every part wired, the loop run
supervisor.py   the loop: claim, gate, spawn, reap, limits, shutdown, recovery
hooks.py        what the daemon does at the loop's milestones: systemd, heartbeat, alerts
outcome.py      how an attempt ended, decided from what its worker session saw
gate.py         may a worker be spawned now? (memory, load, cgroup limits)
permits.py      answers workers' rate-limit permits and outcome reports
providers.py    what the daemon hands down from ``Settings``: provider settings, secrets
delivery_queue.py  delivery archives built beside the loop, and rebuilt at start-up
notify.py       sd_notify: READY, WATCHDOG, STOPPING
metrics/        Prometheus counters and gauges: collected, rendered, exported
"""
