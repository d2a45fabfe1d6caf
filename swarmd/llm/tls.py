"""The TLS contexts of the router's HTTP clients, made once a process.

httpx makes an ``ssl.SSLContext`` for every client, even one that only ever speaks plain
``http://``: ~5 ms of CPU in a fresh worker without verification (OpenSSL's context) and
~35 ms with it (the CA bundle parsed). A worker made its own before its first request. A
context is made here once per process and per setting instead; the fork server makes both
while it warms up (``swarmd.worker.forkserver``), so every worker forked after that shares
them.

A context is what ``httpx.create_ssl_context`` makes for the same arguments, and that
reads ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` when ``trust_env``: their values are part of
the key, so a worker whose environment names other CA files gets a context of its own.
"""

from __future__ import annotations

import functools
import os
import ssl

import httpx


def client_context(*, verify: bool, trust_env: bool) -> ssl.SSLContext:
    """The context of a client with these settings, made once in this process."""
    ca_file = os.environ.get("SSL_CERT_FILE") if trust_env and verify else None
    ca_dir = os.environ.get("SSL_CERT_DIR") if trust_env and verify else None
    return _made(verify, trust_env, ca_file, ca_dir)


@functools.cache
def _made(verify: bool, trust_env: bool, ca_file: str | None, ca_dir: str | None) -> ssl.SSLContext:
    del ca_file, ca_dir  # the key only: httpx reads them from the environment itself
    return httpx.create_ssl_context(verify=verify, trust_env=trust_env)


def prepare() -> None:
    """Make the contexts a worker most likely needs (this process's environment's)."""
    for verify in (True, False):
        client_context(verify=verify, trust_env=True)
