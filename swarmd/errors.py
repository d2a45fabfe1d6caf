"""The one exception hierarchy of swarmd.

Every error a user can meet is a ``SwarmdError`` carrying one clear sentence and the exit
code the CLI returns for it. Adapters translate foreign exceptions (``sqlite3.*``,
``httpx.*``, ``OSError``) into this tree at their edge, with ``raise ... from exc``.

    SwarmdError                      exit 1 unless a subclass says otherwise
    ├── ConfigError                  invalid settings or agent registry (exit 78, EX_CONFIG)
    ├── InputError                   bad input from the user; nothing was written (exit 2)
    │   ├── TicketError              an invalid ticket file or plan
    │   ├── NotFoundError            an unknown ticket or task id
    │   └── InvalidTransitionError   a state change the task's state does not allow
    ├── EnvironmentProblem           the host is not usable as it is (exit 3)
    │   ├── StoreError               the database is unusable (corrupt, unreadable, locked)
    │   └── DaemonRunningError       another daemon holds this home's lock
    ├── StaleAttemptError            a result carried a token that is no longer current
    ├── ProcessError                 a worker could not be spawned or signalled
    ├── OutputError                  a workspace write or an archive was refused or failed
    │   └── UnsafePathError          a path that is absolute, climbs out, or meets a symlink
    ├── ProviderError                an LLM request failed (see swarmd.llm.errors)
    ├── GitError                     a repository operation failed (see swarmd.git.errors)
    ├── ForgeError                   a forge refused or failed a request (a pull request)
    └── AlertError                   an alert's command or webhook failed
"""

from __future__ import annotations


class SwarmdError(Exception):
    """The root of every error swarmd raises on purpose."""

    exit_code: int = 1


class ConfigError(SwarmdError):
    """Settings or the agent registry are invalid."""

    exit_code = 78


class InputError(SwarmdError):
    """The user's input was refused; nothing was written."""

    exit_code = 2


class TicketError(InputError):
    """A ticket file (or a planner's task graph) failed validation."""


class NotFoundError(InputError):
    """No ticket or task has the given id."""


class InvalidTransitionError(InputError):
    """The requested state change is not allowed from the task's current state."""


class EnvironmentProblem(SwarmdError):
    """The host environment is not usable as it is."""

    exit_code = 3


class StoreError(EnvironmentProblem):
    """The database cannot be opened, read, or written."""


class DaemonRunningError(EnvironmentProblem):
    """Another daemon already runs on this home."""


class StaleAttemptError(SwarmdError):
    """A result arrived with a fencing token that is not the task's current attempt."""


class ProcessError(SwarmdError):
    """A worker process could not be spawned or signalled."""


class OutputError(SwarmdError):
    """Writing into a workspace or packaging an archive failed or was refused."""


class UnsafePathError(OutputError):
    """A path was absolute, climbed out of the workspace, or met a symlink."""


class ProviderError(SwarmdError):
    """An LLM provider request failed; ``swarmd.llm.errors`` refines it."""


class GitError(SwarmdError):
    """A repository operation failed; ``swarmd.git.errors`` refines it."""


class ForgeError(SwarmdError):
    """A forge (GitHub, Gitea, Forgejo) refused or failed a request."""


class AlertError(SwarmdError):
    """An alert could not be delivered: its command failed or its webhook refused it."""
