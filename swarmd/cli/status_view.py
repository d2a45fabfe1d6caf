"""``swarmd status`` for people: the daemon, its workers, the queue, the gate, the models.

Lines are built from units that never split ("3 ready", "p95 0.6s"): a line longer than
the console wraps between units, its continuation indented under its label, so at 80
columns (or in a pipe, where the width is 80) a label stays beside its number.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from swarmd.cli.quoting import printable
from swarmd.cli.render import STATE_STYLES, duration, plain, when

GATE_REASON_CHARS = 300
MODEL_ERROR_CHARS = 60


def wrapped(label: str, units: Sequence[Text | str], width: int, sep: str = ", ") -> list[Text]:
    """``label`` then ``units`` joined by ``sep``, wrapped between units to ``width``."""
    indent = " " * min(len(label), 12)
    room = width - len(sep.rstrip())  # a wrapped line ends with the separator's mark
    lines: list[Text] = []
    line = Text(label)
    fresh = True  # nothing after the label or indent yet
    for unit in units:
        piece = Text(unit) if isinstance(unit, str) else unit
        if not fresh and line.cell_len + len(sep) + piece.cell_len > room:
            line.append(sep.rstrip())
            lines.append(line)
            line, fresh = Text(indent), True
        if not fresh:
            line.append(sep)
        line.append_text(piece)
        fresh = False
    lines.append(line)
    return lines


def daemon_units(daemon: dict[str, Any]) -> list[Text]:
    if not daemon.get("running"):
        return [Text("not running", style="red")]
    if "heartbeat_age_s" not in daemon:
        return [Text(f"pid {daemon.get('pid')}"), Text("no heartbeat yet")]
    health = (
        Text("STALE heartbeat", style="red")
        if daemon.get("stale")
        else Text("healthy", style="green")
    )
    return [
        health,
        Text(f"pid {daemon['pid']}"),
        Text(f"version {daemon['version']}"),
        Text(f"up {duration(daemon['uptime_s'])}"),
        Text(f"heartbeat {daemon['heartbeat_age_s']:.1f}s ago"),
    ]


def queue_units(queue: dict[str, int]) -> list[Text]:
    """``3 ready``, ``1 dead``: the states that hold tasks, in the queue's order."""
    units = [
        Text(f"{n} ").append(state, style=STATE_STYLES.get(state, ""))
        for state, n in queue.items()
        if n
    ]
    return units or [Text("empty")]


def status_renderables(report: dict[str, Any], width: int = 80) -> list[Any]:
    parts: list[Any] = wrapped("daemon: ", daemon_units(report["daemon"]), width)
    database = report.get("database") or {}
    if database and not database.get("exists"):
        parts += wrapped("database: ", [f"none yet at {printable(database['path'])}"], width)
        return parts
    for member in report.get("fleet") or []:
        units = [
            Text(f"{member['host']}:{member['home']}"),
            Text(f"pid {member['pid']}"),
            Text(f"heartbeat {member['heartbeat_age_s']:.1f}s ago"),
            Text(f"{member['workers']} workers"),
        ]
        if member["running"]:
            units.append(Text("running " + " ".join(member["running"][:6])))
        parts += wrapped("fleet: ", units, width)
    parts += wrapped("queue: ", queue_units(report["queue"]), width)
    gate = report.get("gate")
    if gate is not None:
        parts += gate_lines(gate, width)
    workers = report.get("workers") or []
    running = report["daemon"].get("running")
    if workers:
        parts.append(workers_table(workers))
    elif running:
        parts.append(Text("workers: none running"))
    models = report.get("models") or {}
    if models:
        parts.append(models_table(models))
    elif running:
        parts.append(Text("models: no model calls yet"))
    for label, units in activity_units(report):
        parts += wrapped(label, units, width)
    return parts


def gate_lines(gate: dict[str, Any], width: int) -> list[Text]:
    if gate.get("allowed"):
        return [Text("gate: ").append("open", style="green")]
    reason = printable(str(gate.get("reason") or "no reason given"), GATE_REASON_CHARS)
    held = Text("held", style="yellow").append(":", style="")
    return wrapped("gate: ", [held, *reason.split(" ")], width, sep=" ")


def models_table(models: dict[str, Any]) -> Table:
    table = Table(
        "model",
        "requests/min",
        "errors/min",
        "cooling until",
        "last error",
        title="models",
        box=None,
    )
    for name, m in models.items():
        until = m.get("cooling_until")
        table.add_row(
            plain(name),
            str(m.get("requests_last_minute", 0)),
            str(m.get("errors_last_minute", 0)),
            time.strftime("%H:%M:%S", time.localtime(until)) if until else "-",
            plain(str(m.get("last_error") or "-"), MODEL_ERROR_CHARS),
        )
    return table


def workers_table(workers: list[dict[str, Any]]) -> Table:
    with_cpu = any("cpu_percent" in w for w in workers)
    columns = ["task", "attempt", "agent", "pid", "age", "rss", *(["cpu"] if with_cpu else [])]
    table = Table(*columns, "heartbeat", title="workers", box=None)
    for w in workers:
        cpu = [f"{w.get('cpu_percent', 0.0):.0f}%"] if with_cpu else []
        table.add_row(
            plain(w["task"]),
            str(w["attempt"]),
            plain(w["agent"]),
            str(w["pid"]),
            duration(w["age_s"]),
            f"{w['rss_bytes'] / 2**20:.0f} MB",
            *cpu,
            f"{w['heartbeat_age_s']:.1f}s ago"
            + (f" ({w['stopping']})" if w.get("stopping") else ""),
        )
    return table


def attempts_unit(w: dict[str, Any]) -> Text:
    """``30 attempts (19 ok, 7 failed, 4 interrupted or cancelled)``: the parts add up."""
    cut_short = w["finished"] - w["succeeded"] - w["failed"]
    parts = [Text(f"{w['succeeded']} ok")]
    if w["failed"]:
        parts.append(Text(f"{w['failed']} failed", style="red"))
    if cut_short:
        parts.append(Text(f"{cut_short} interrupted or cancelled"))
    unit = Text(f"{w['finished']} attempt{'' if w['finished'] == 1 else 's'} (")
    for index, part in enumerate(parts):
        unit.append(", " if index else "").append_text(part)
    return unit.append(")")


def activity_units(report: dict[str, Any]) -> list[tuple[str, list[Text]]]:
    """Throughput, latency and capacity per window, then today's tokens and cost."""
    lines: list[tuple[str, list[Text]]] = []
    for label, w in (report.get("throughput") or {}).items():
        head = f"last {label}: "
        if not w["finished"] and not w["busy_worker_s"]:
            lines.append((head, [Text("no attempts")]))
            continue
        latency = (
            [Text(f"p50 {duration(w['p50_s'])}"), Text(f"p95 {duration(w['p95_s'])}")]
            if w["p50_s"] is not None
            else [Text("no latency yet")]
        )
        lines.append(
            (
                head,
                [
                    attempts_unit(w),
                    Text(f"{w['per_minute']:.1f}/min"),
                    *latency,
                    Text(f"capacity {w['utilisation']:.0%} of {w['max_workers']} workers"),
                ],
            )
        )
    usage = report.get("usage_today")
    if usage is not None:
        units = [
            Text(
                f"{usage['tokens']:,} tokens ({usage['prompt_tokens']:,} in, "
                f"{usage['completion_tokens']:,} out)"
            ),
            Text(f"${usage['cost_usd']:.4f}"),
        ]
        models = usage.get("by_model") or {}
        if len(models) > 1:
            units += [
                Text(f"{printable(name)} {m['tokens']:,} (${m['cost_usd']:.4f})")
                for name, m in models.items()
            ]
        lines.append(("today: ", units))
    return lines


def print_status(console: Console, report: dict[str, Any]) -> None:
    for part in status_renderables(report, console.width):
        # A line is already wrapped between its units: one wider than the console (a long
        # path) runs on, for the terminal to wrap, rather than being cut in two.
        console.print(part, soft_wrap=isinstance(part, Text))


def watch(console: Console, gather: Callable[[], dict[str, Any]], interval: float = 1.0) -> None:
    """Refresh the status every ``interval`` seconds until Ctrl-C: a live display on a
    terminal; elsewhere (a pipe, a file, journald) one plain snapshot per interval, each
    headed by its time."""
    try:
        if not console.is_terminal:
            while True:
                console.print(Text(f"-- {when(time.time())}"), soft_wrap=True)
                print_status(console, gather())
                console.file.flush()  # a pipe is block-buffered: each snapshot goes out whole
                time.sleep(interval)
        with Live(console=console, auto_refresh=False) as live:
            while True:
                renderables = status_renderables(gather(), console.width)
                live.update(Group(*renderables), refresh=True)
                time.sleep(interval)
    except KeyboardInterrupt:
        return
