"""``swarmd status`` for people: the daemon, its workers, the queue, the gate, the models."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from swarmd.cli.render import duration, styled


def daemon_line(daemon: dict[str, Any]) -> str:
    if not daemon.get("running"):
        return "daemon: [red]not running[/red]"
    if "heartbeat_age_s" not in daemon:
        return f"daemon: pid {daemon.get('pid')}, no heartbeat yet"
    health = "[red]STALE heartbeat[/red]" if daemon.get("stale") else "[green]healthy[/green]"
    return (
        f"daemon: {health}, pid {daemon['pid']}, version {daemon['version']}, "
        f"up {duration(daemon['uptime_s'])}, heartbeat {daemon['heartbeat_age_s']:.1f}s ago"
    )


def status_renderables(report: dict[str, Any]) -> list[Any]:
    parts: list[Any] = [Text.from_markup(daemon_line(report["daemon"]))]
    queue = report["queue"]
    depth = "  ".join(f"{styled(state)} {n}" for state, n in queue.items())
    parts.append(Text.from_markup(f"queue: {depth}"))
    gate = report.get("gate")
    if gate is not None:
        gate_text = (
            "[green]open[/green]"
            if gate.get("allowed")
            else f"[yellow]held[/yellow]: {gate.get('reason')}"
        )
        parts.append(Text.from_markup(f"gate: {gate_text}"))
    workers = report.get("workers") or []
    if workers:
        parts.append(workers_table(workers))
    elif report["daemon"].get("running"):
        parts.append(Text("workers: none running"))
    models = report.get("models") or {}
    if models:
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
                name,
                str(m.get("requests_last_minute", 0)),
                str(m.get("errors_last_minute", 0)),
                time.strftime("%H:%M:%S", time.localtime(until)) if until else "-",
                str(m.get("last_error") or "-")[:60],
            )
        parts.append(table)
    parts.extend(Text.from_markup(line) for line in activity_lines(report))
    return parts


def workers_table(workers: list[dict[str, Any]]) -> Table:
    with_cpu = any("cpu_percent" in w for w in workers)
    columns = ["task", "attempt", "agent", "pid", "age", "rss", *(["cpu"] if with_cpu else [])]
    table = Table(*columns, "heartbeat", title="workers", box=None)
    for w in workers:
        cpu = [f"{w.get('cpu_percent', 0.0):.0f}%"] if with_cpu else []
        table.add_row(
            w["task"],
            str(w["attempt"]),
            w["agent"],
            str(w["pid"]),
            duration(w["age_s"]),
            f"{w['rss_bytes'] / 2**20:.0f} MB",
            *cpu,
            f"{w['heartbeat_age_s']:.1f}s ago"
            + (f" ({w['stopping']})" if w.get("stopping") else ""),
        )
    return table


def activity_lines(report: dict[str, Any]) -> list[str]:
    """Throughput, latency and capacity per window, then today's tokens and cost."""
    lines = []
    for label, w in (report.get("throughput") or {}).items():
        if not w["finished"] and not w["busy_worker_s"]:
            lines.append(f"last {label}: no attempts")
            continue
        latency = (
            f"p50 {duration(w['p50_s'])}, p95 {duration(w['p95_s'])}"
            if w["p50_s"] is not None
            else "no latency yet"
        )
        failed = f", [red]{w['failed']} failed[/red]" if w["failed"] else ""
        lines.append(
            f"last {label}: {w['finished']} attempts ({w['succeeded']} ok{failed}), "
            f"{w['per_minute']:.1f}/min, {latency}, "
            f"capacity {w['utilisation']:.0%} of {w['max_workers']} workers"
        )
    usage = report.get("usage_today")
    if usage is not None:
        line = (
            f"today: {usage['tokens']:,} tokens ({usage['prompt_tokens']:,} in, "
            f"{usage['completion_tokens']:,} out), ${usage['cost_usd']:.4f}"
        )
        models = usage.get("by_model") or {}
        if len(models) > 1:
            line += "; " + ", ".join(
                f"{name} {m['tokens']:,} (${m['cost_usd']:.4f})" for name, m in models.items()
            )
        lines.append(line)
    return lines


def print_status(console: Console, report: dict[str, Any]) -> None:
    for part in status_renderables(report):
        console.print(part)


def watch(gather: Callable[[], dict[str, Any]], interval: float = 1.0) -> None:
    with Live(auto_refresh=False) as live:
        try:
            while True:
                live.update(Group(*status_renderables(gather())), refresh=True)
                time.sleep(interval)
        except KeyboardInterrupt:
            return
