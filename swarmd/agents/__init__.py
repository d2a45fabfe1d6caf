"""Agents: what a worker runs for a task — echo, command, llm, verify, or a named one."""
