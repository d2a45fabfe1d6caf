"""Ticket files and ticket data into a validated ``TicketSpec`` (the schema: ``swarmd.tickets``)."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import tomllib
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, NoReturn

from swarmd.errors import TicketError
from swarmd.models import TaskSpec, TicketSpec
from swarmd.text import escape, plain_or_quoted, quote
from swarmd.tickets.fields import FieldReader, describe_kind
from swarmd.tickets.graph import MAX_TASKS, order_tasks, validate_task_graph

MAX_PROMPT_BYTES = 1_000_000
MAX_TICKET_FILE_BYTES = 16 * 1024 * 1024
"""Parsing costs memory ~10-25 times the file's size in the worst shapes: this bounds it."""
MAX_TABLES = 4 * MAX_TASKS + 1000
"""Tables a JSON ticket may hold (its tasks, and their checks): more is refused mid-parse."""
MAX_INTEGER_DIGITS = 40
SHOWN_PATH_CHARS = 1024
MAX_TITLE_CHARS = 200
MAX_KEY_CHARS = 200
MAX_ATTEMPTS_LIMIT = 100
SHORTHAND_TITLE_CHARS = 80
UNTITLED = "untitled"
"""The title of a ticket that names none, has no prompt, and came from no file."""

DEFAULT_AGENT = "llm"
MAIN_TASK = "main"
PLAN_TASK = "plan"
PLANNER_AGENT = "planner"
COMMAND_AGENT = "command"
VERIFY_AGENT = "verify"
PROMPT_AGENTS = frozenset({"echo", "llm", PLANNER_AGENT})
"""Built-in agents that work from a prompt and take no command."""

TICKET_FIELDS = frozenset(
    {"title", "agent", "priority", "key", "model", "plan", "prompt", "tasks"}
    | {"repo", "base", "deliver"}
)
DELIVERIES = ("branch", "push", "pr")
TASK_FIELDS = frozenset(
    {
        "name",
        "agent",
        "prompt",
        "command",
        "needs",
        "priority",
        "max_attempts",
        "timeout_seconds",
        "model",
        "checks",
    }
)

_INT64 = 2**63


def load_ticket_file(path: Path) -> TicketSpec:
    """Read and validate a ticket file; the format follows the extension, else the content.

    Only a regular file is read: a FIFO, a device, a socket or a directory is refused at once,
    never waited on.
    """
    source = plain_or_quoted(str(path), SHOWN_PATH_CHARS)
    raw = _read_regular_file(path, source)
    return parse_ticket_text(
        raw, fmt=_guess_format(path, raw), source=source, default_title=title_from_path(path)
    )


def title_from_path(path: Path) -> str:
    """The title a ticket file lends a ticket that names none: its stem, made one safe line.

    A file name may hold what a title may not (a newline, a bidi override, bytes that are not
    UTF-8): those are escaped, as messages escape them, rather than refused.
    """
    stem = escape(path.stem.strip())
    return stem[:MAX_TITLE_CHARS].rstrip() or UNTITLED


def parse_ticket_text(
    text: str | bytes,
    *,
    fmt: Literal["toml", "json"],
    source: str = "<ticket>",
    default_title: str | None = None,
) -> TicketSpec:
    """Parse a ticket from its text (bytes must be UTF-8; a leading BOM is allowed).

    ``default_title`` is the title of a ticket that names none and has no top-level prompt.
    """
    if isinstance(text, bytes):
        text = _decode_utf8(text, source)
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise TicketError(f"{source}: the ticket file is empty")
    data = _load_toml(text, source) if fmt == "toml" else _load_json(text, source)
    if not isinstance(data, dict):
        raise TicketError(f"{source}: the top level must be a table, not {describe_kind(data)}")
    return parse_ticket_data(data, source=source, default_title=default_title)


def parse_ticket_data(
    data: Mapping[str, Any], *, source: str = "<ticket>", default_title: str | None = None
) -> TicketSpec:
    """Validate already-decoded ticket data (a parsed file, or a JSON request).

    A ticket that names no ``title`` takes the first line of its top-level prompt, else
    ``default_title`` (a ticket file's stem), else ``UNTITLED``.
    """
    fields = FieldReader(data, source)
    fields.refuse_unknown(TICKET_FIELDS)
    agent = fields.name("agent") or DEFAULT_AGENT
    plan = fields.boolean("plan") or False
    prompt = fields.prompt("prompt", max_bytes=MAX_PROMPT_BYTES)
    has_tasks = "tasks" in data
    if plan:
        if prompt is None:
            fields.refuse('plan = true needs a "prompt" with the goal to plan')
        if has_tasks:
            fields.refuse('plan = true takes a "prompt" and no "tasks": the planner writes them')
        tasks: tuple[TaskSpec, ...] = (
            TaskSpec(name=PLAN_TASK, agent=PLANNER_AGENT, prompt=prompt),
        )
    elif prompt is not None:
        if has_tasks:
            fields.refuse('give either a top-level "prompt" or "tasks", not both')
        tasks = (TaskSpec(name=MAIN_TASK, prompt=prompt),)
        _check_agent_inputs(tasks[0], agent, f"{source}: task {quote(MAIN_TASK)}")
    elif has_tasks:
        tasks = parse_tasks(data["tasks"], default_agent=agent, source=source)
    else:
        fields.refuse('there are no "tasks" (or a top-level "prompt" for a one-task ticket)')
    model = fields.models("model")
    if model is not None:
        # The ticket's chain is the default of its tasks (the planner's included).
        tasks = tuple(t if t.model else dataclasses.replace(t, model=model) for t in tasks)
    title = fields.text("title", max_chars=MAX_TITLE_CHARS)
    if title is None:
        title = _title_from_prompt(prompt) if prompt is not None else default_title or UNTITLED
    return TicketSpec(
        title=title,
        tasks=tasks,
        agent=agent,
        priority=fields.integer("priority", minimum=-_INT64, maximum=_INT64 - 1) or 0,
        key=fields.text("key", max_chars=MAX_KEY_CHARS),
        plan=plan,
        prompt=prompt if plan else None,
        model=model,
        **_repository_fields(fields),
    )


def _repository_fields(fields: FieldReader) -> dict[str, str | None]:
    """``repo``, ``base`` and ``deliver``: checked for form here, resolved at submit."""
    found = {name: fields.text(name, max_chars=4096) for name in ("repo", "base", "deliver")}
    if found["repo"] is None and (found["base"] or found["deliver"]):
        fields.refuse('"base" and "deliver" need a "repo"')
    if found["deliver"] is not None and found["deliver"] not in DELIVERIES:
        fields.refuse(f'field "deliver" must be one of {", ".join(DELIVERIES)}')
    return found


def parse_tasks(
    items: Any,
    *,
    default_agent: str = DEFAULT_AGENT,
    existing: Collection[str] = (),
    source: str = "<ticket>",
) -> tuple[TaskSpec, ...]:
    """Validate a list of task tables (a ticket's, or a planner's graph added to ``existing``).

    The tasks come back in dependency order (see ``order_tasks``), not necessarily as written.
    """
    if not isinstance(items, list):
        raise TicketError(f'{source}: field "tasks" must be an array, not {describe_kind(items)}')
    if not items:
        raise TicketError(f'{source}: field "tasks" is empty')
    if len(items) > MAX_TASKS:
        raise TicketError(f"{source}: {len(items):,} tasks is over the limit of {MAX_TASKS:,}")
    tasks = tuple(
        _parse_task(item, number, default_agent, source)
        for number, item in enumerate(items, start=1)
    )
    validate_task_graph(tasks, existing=existing, source=source)
    return order_tasks(tasks)


def ticket_to_data(spec: TicketSpec) -> dict[str, Any]:
    """The plain data ``parse_ticket_data`` turns back into an equal ``TicketSpec``."""
    data: dict[str, Any] = {"title": spec.title, "agent": spec.agent, "priority": spec.priority}
    if spec.key is not None:
        data["key"] = spec.key
    if spec.model is not None:
        data["model"] = list(spec.model)
    for name in ("repo", "base", "deliver"):
        if getattr(spec, name) is not None:
            data[name] = getattr(spec, name)
    if spec.plan:
        data["plan"] = True
        data["prompt"] = spec.prompt
    else:
        data["tasks"] = [_task_to_data(task) for task in spec.tasks]
    return data


def _task_to_data(task: TaskSpec) -> dict[str, Any]:
    data: dict[str, Any] = {"name": task.name}
    optional: dict[str, Any] = {
        "agent": task.agent,
        "prompt": task.prompt,
        "command": list(task.command) if task.command is not None else None,
        "needs": list(task.needs) or None,
        "priority": task.priority,
        "max_attempts": task.max_attempts,
        "timeout_seconds": task.timeout_seconds,
        "model": list(task.model) if task.model is not None else None,
        "checks": [dict(check) for check in task.checks] or None,
    }
    data.update((key, value) for key, value in optional.items() if value is not None)
    return data


def _parse_task(item: Any, number: int, default_agent: str, source: str) -> TaskSpec:
    if not isinstance(item, dict):
        raise TicketError(f"{source}: task #{number} must be a table, not {describe_kind(item)}")
    if item.get("name") is None:
        raise TicketError(f'{source}: task #{number}: missing required field "name"')
    name = FieldReader(item, f"{source}: task #{number}").name("name")
    assert name is not None  # present, so validated or refused
    fields = FieldReader(item, f"{source}: task {quote(name)}")
    fields.refuse_unknown(TASK_FIELDS)
    task = TaskSpec(
        name=name,
        agent=fields.name("agent"),
        prompt=fields.prompt("prompt", max_bytes=MAX_PROMPT_BYTES),
        command=fields.argv("command"),
        needs=fields.names("needs") or (),
        priority=fields.integer("priority", minimum=-_INT64, maximum=_INT64 - 1),
        max_attempts=fields.integer("max_attempts", minimum=1, maximum=MAX_ATTEMPTS_LIMIT),
        timeout_seconds=fields.seconds("timeout_seconds"),
        model=fields.models("model"),
        checks=fields.checks("checks") or (),
    )
    _check_agent_inputs(task, task.agent or default_agent, fields.where)
    return task


def _check_agent_inputs(task: TaskSpec, agent: str, where: str) -> None:
    """Each agent gets what it works from: a prompt, a command, or checks."""
    if agent == COMMAND_AGENT and task.command is None:
        raise TicketError(f'{where}: agent "command" needs a "command"')
    if agent in PROMPT_AGENTS:
        if task.prompt is None:
            raise TicketError(f'{where}: agent "{agent}" needs a "prompt"')
        if task.command is not None:
            raise TicketError(f'{where}: agent "{agent}" takes no "command"')
    if agent == VERIFY_AGENT and not task.checks:
        raise TicketError(f'{where}: agent "verify" needs "checks"')
    if agent != VERIFY_AGENT and task.checks:
        raise TicketError(f'{where}: "checks" are only run by agent "verify", not "{agent}"')
    named = agent not in PROMPT_AGENTS | {COMMAND_AGENT, VERIFY_AGENT}
    if named and task.prompt is None and task.command is None:
        raise TicketError(f'{where}: agent "{agent}" needs a "prompt" or a "command"')


def _read_regular_file(path: Path, source: str) -> bytes:
    """The bytes of the regular file at ``path``; ``TicketError`` for anything else."""
    try:
        _refuse_non_regular(os.stat(path).st_mode, source)
        # O_NONBLOCK: a FIFO swapped in after the stat must not make the open wait for a
        # writer; the fstat then judges the file actually opened.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise TicketError(f"{source}: cannot read the ticket file: {exc.strerror or exc}") from exc
    except ValueError as exc:  # a NUL in the path
        raise TicketError(f"{source}: cannot read the ticket file: {exc}") from exc
    try:
        info = os.fstat(fd)
        _refuse_non_regular(info.st_mode, source)
        if info.st_size > MAX_TICKET_FILE_BYTES:
            _refuse_too_large(source)
        with open(fd, "rb", closefd=False) as file:
            raw = file.read(MAX_TICKET_FILE_BYTES + 1)
    except OSError as exc:
        raise TicketError(f"{source}: cannot read the ticket file: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(raw) > MAX_TICKET_FILE_BYTES:  # it grew, or its size was not known
        _refuse_too_large(source)
    return raw


def _refuse_non_regular(mode: int, source: str) -> None:
    if stat.S_ISREG(mode):
        return
    kinds = {
        stat.S_ISDIR: "a directory",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
    }
    kind = next((name for test, name in kinds.items() if test(mode)), "an unknown kind of file")
    # Worded as strerror words EISDIR, which is what reading a directory used to report.
    raise TicketError(f"{source}: cannot read the ticket file: Is {kind}, not a regular file")


def _refuse_too_large(source: str) -> NoReturn:
    raise TicketError(
        f"{source}: the ticket file is larger than {MAX_TICKET_FILE_BYTES // 2**20} MiB"
    )


def _title_from_prompt(prompt: str) -> str:
    first_line = next((line.strip() for line in prompt.splitlines() if line.strip()), "")
    return first_line[:SHORTHAND_TITLE_CHARS].rstrip()


def _guess_format(path: Path, raw: bytes) -> Literal["toml", "json"]:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix == ".toml":
        return "toml"
    return "json" if raw.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "toml"


def _decode_utf8(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise TicketError(
            f"{source}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} on line {line})"
        ) from exc


def _load_toml(text: str, source: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TicketError(f"{source}: invalid TOML: {exc}") from exc
    except RecursionError as exc:
        raise TicketError(f"{source}: invalid TOML: nested too deeply") from exc
    except ValueError as exc:  # int() refuses integers of thousands of digits
        raise TicketError(f"{source}: invalid TOML: a number is too long to read") from exc


def _load_json(text: str, source: str) -> Any:
    tables = 0

    def refuse_duplicates(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal tables
        tables += 1
        if tables > MAX_TABLES:
            # Refused mid-parse: a file of millions of empty tables would take gigabytes.
            raise TicketError(f"{source}: invalid ticket: more than {MAX_TABLES:,} tables")
        table: dict[str, Any] = {}
        for key, value in pairs:
            if key in table:
                raise TicketError(f"{source}: invalid JSON: key {quote(key)} appears twice")
            table[key] = value
        return table

    def refuse_constant(name: str) -> NoReturn:
        raise TicketError(f"{source}: invalid JSON: {name} is not a number JSON allows")

    def bounded_int(digits: str) -> int:
        if len(digits.lstrip("-")) > MAX_INTEGER_DIGITS:
            raise TicketError(
                f"{source}: invalid JSON: the integer {quote(digits, 20)} is too large"
            )
        return int(digits)

    try:
        return json.loads(
            text,
            object_pairs_hook=refuse_duplicates,
            parse_constant=refuse_constant,
            parse_int=bounded_int,
        )
    except json.JSONDecodeError as exc:
        raise TicketError(
            f"{source}: invalid JSON on line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from exc
    except RecursionError as exc:
        raise TicketError(f"{source}: invalid JSON: nested too deeply") from exc
