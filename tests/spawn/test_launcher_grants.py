"""What the launcher hands a command agent's job: the variables granted by name, and prices."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from swarmd.agents.registry import AgentRegistry
from swarmd.home import HomeLayout
from swarmd.models import ClaimedTask, TaskSpec, TicketSpec
from swarmd.spawn.launcher import LaunchSettings, WorkerLauncher
from swarmd.store import Store
from swarmd.wire.agent import AgentDef, AgentKind, UsageFormat
from swarmd.wire.job import LLMSettings

PRICES = {"openai/gpt-5-codex": (1.25, 10.0)}
GRANTABLE = {
    "PATH": "/usr/bin",
    "DATABASE_URL": "postgres://db",
    "OPENAI_API_KEY": "sk-openai",
    "ANTHROPIC_API_KEY": "sk-anthropic",
    "NOTIFY_SOCKET": "/run/systemd/notify",
    "INVOCATION_ID": "abc",
}


async def refuse_calls(method: str, args: dict[str, Any]) -> Any:
    raise RuntimeError(f"no broker in this test ({method})")


def launcher(home: Path, *agents: AgentDef) -> WorkerLauncher:
    return WorkerLauncher(
        LaunchSettings(
            layout=HomeLayout(home),
            worker_timeout_seconds=60,
            heartbeat_seconds=1,
            grace_seconds=2,
            model_chain=("echo/echo",),
            max_fix_rounds=0,
            llm=LLMSettings(prices=PRICES),
            secrets=GRANTABLE,
        ),
        AgentRegistry({agent.name: agent for agent in agents}),
        {},
        answer_call=refuse_calls,
        skip_grace=asyncio.Event(),
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "home" / "swarmd.db")
    try:
        yield opened
    finally:
        await opened.close()


async def claimed_task(store: Store, agent: str) -> ClaimedTask:
    await store.submit_ticket(
        TicketSpec(title="t", tasks=(TaskSpec(name="t", agent=agent, prompt="go"),))
    )
    claimed = await store.claim_ready_task()
    assert claimed is not None
    return claimed


async def test_a_command_is_granted_the_variables_it_names_secret_or_not(
    tmp_path: Path, store: Store
) -> None:
    agent = AgentDef(
        name="cli",
        kind=AgentKind.COMMAND,
        command=("cli",),
        env=("DATABASE_URL", "OPENAI_API_KEY", "UNSET_VARIABLE"),
    )

    job = launcher(tmp_path / "home", agent).build_job(await claimed_task(store, "cli"))

    assert job.granted_env == {"DATABASE_URL": "postgres://db", "OPENAI_API_KEY": "sk-openai"}


async def test_systemds_variables_are_never_granted_even_when_named(
    tmp_path: Path, store: Store
) -> None:
    agent = AgentDef(
        name="cli",
        kind=AgentKind.COMMAND,
        command=("cli",),
        env=("NOTIFY_SOCKET", "INVOCATION_ID", "PATH"),
    )

    job = launcher(tmp_path / "home", agent).build_job(await claimed_task(store, "cli"))

    assert job.granted_env == {"PATH": "/usr/bin"}


async def test_only_a_command_agent_that_reports_usage_gets_the_prices(
    tmp_path: Path, store: Store
) -> None:
    codex = AgentDef(
        name="codex", kind=AgentKind.COMMAND, command=("codex",), usage=UsageFormat.CODEX_JSON
    )
    plain = AgentDef(name="plain", kind=AgentKind.COMMAND, command=("plain",))
    launch = launcher(tmp_path / "home", codex, plain)

    assert launch.build_job(await claimed_task(store, "codex")).prices == PRICES
    assert launch.build_job(await claimed_task(store, "plain")).prices == {}
