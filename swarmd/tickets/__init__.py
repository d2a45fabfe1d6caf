"""Ticket files: TOML or JSON, one schema, parsed and validated into a ``TicketSpec``.

The schema (DESIGN.md §6)::

    title = "Landing page"     # optional: the prompt's first line, else the file's stem
    agent = "llm"              # default agent of the tasks: echo | command | llm | a named agent
    priority = 0               # higher runs first
    key = "landing-v1"         # idempotency key: submitting it again returns the same ticket
    model = "openai/gpt-4.1-mini"          # or a list: a fallback chain
    prompt = "..."             # alone: a one-task ticket (task "main")
    plan = true                # with a prompt: a planner writes the task graph (task "plan")

    [[tasks]]
    name = "html"              # [A-Za-z0-9][A-Za-z0-9_-]{0,63}, so ``TICKET.TASK`` ids parse
    agent = "command"
    prompt = "..."
    command = ["python3", "build.py", "{workspace}"]
    needs = ["copy"]
    priority = 0
    max_attempts = 3
    timeout_seconds = 600
    model = ["anthropic/claude-sonnet-4-5", "openai/gpt-4.1-mini"]
    checks = [{type = "file_exists", path = "index.html"},      # verify tasks only
              {type = "command_succeeds", command = ["pytest", "-q"]}]
    # repository tickets also: {type = "tests_pass", command = [...]}, {type = "git_clean"}

Every refusal is a ``TicketError`` with one sentence that names the file, the task and the
field. The same rules check a planner's task graph (``parse_tasks``).
"""

from swarmd.tickets.graph import MAX_TASKS, order_tasks, validate_task_graph
from swarmd.tickets.parse import (
    DEFAULT_AGENT,
    MAIN_TASK,
    MAX_PROMPT_BYTES,
    PLAN_TASK,
    PLANNER_AGENT,
    VERIFY_AGENT,
    load_ticket_file,
    parse_tasks,
    parse_ticket_data,
    parse_ticket_text,
    ticket_to_data,
)

__all__ = [
    "DEFAULT_AGENT",
    "MAIN_TASK",
    "MAX_PROMPT_BYTES",
    "MAX_TASKS",
    "PLANNER_AGENT",
    "PLAN_TASK",
    "VERIFY_AGENT",
    "load_ticket_file",
    "order_tasks",
    "parse_tasks",
    "parse_ticket_data",
    "parse_ticket_text",
    "ticket_to_data",
    "validate_task_graph",
]
