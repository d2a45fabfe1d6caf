"""What runs outside the daemon: the fork server, and each worker process it forks.

    forkserver.py  imports once, then forks a warm worker per spawn request
    main.py        one worker: read the job, run the agent, package outputs, report back
    rehearsal.py   the fork server serves one ``true`` job itself, so workers copy less
    shim.py        the parent-death chain: a worker's whole group dies with the daemon

Never imports the store: a worker talks to the daemon only over its channel (``wire``).
Kept empty of imports so ``python -m swarmd.worker`` pays for nothing it does not use.
"""
