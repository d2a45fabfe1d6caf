"""The daemon's side of a worker: from a claimed task to a process, and back to a verdict.

launcher.py   a claimed task -> its job, paths and environment -> a running session
session.py    one worker process running one attempt: its channel, its stop, its facts
spawners.py   how a process is made: exec a fresh interpreter, or fork from the fork server
groups.py     process groups: identity (pid + start time), signals, limits, stale groups
"""
