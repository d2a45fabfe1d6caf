"""The router's TLS contexts: made once a process and setting, as httpx would make them."""

from __future__ import annotations

import ssl

import pytest

from swarmd.llm.router import create_http_client
from swarmd.llm.tls import client_context


def test_a_context_is_made_once_for_each_setting() -> None:
    verifying = client_context(verify=True, trust_env=True)
    assert client_context(verify=True, trust_env=True) is verifying
    assert verifying.verify_mode is ssl.CERT_REQUIRED and verifying.check_hostname
    plain = client_context(verify=False, trust_env=True)
    assert plain is not verifying
    assert plain.verify_mode is ssl.CERT_NONE and not plain.check_hostname


def test_other_ca_files_in_the_environment_make_a_context_of_their_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    usual = client_context(verify=True, trust_env=True)
    monkeypatch.setenv("SSL_CERT_FILE", ssl.get_default_verify_paths().openssl_cafile)
    other = client_context(verify=True, trust_env=True)
    assert other is not usual
    assert client_context(verify=True, trust_env=False) is not other  # the variable unread


async def test_every_client_of_a_process_shares_its_context() -> None:
    first, second = create_http_client(tls=True), create_http_client(tls=True)
    try:
        assert first._transport._pool._ssl_context is second._transport._pool._ssl_context  # type: ignore[attr-defined]
    finally:
        await first.aclose()
        await second.aclose()
