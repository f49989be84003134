"""Fails loudly when an asyncua upgrade changes an internal that ``collectors/opcua/compat_asyncua.py`` relies on.

Each test names the internal it checks. When one fails after an upgrade: read the new asyncua code for that internal,
adapt ``compat_asyncua.py`` (only there), run the collector tests, then set ``TESTED_VERSION`` and the pins in
``pyproject.toml`` and ``constraints.txt`` to the new version.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import inspect
import re
import textwrap
from pathlib import Path

from asyncua import Client, ua
from asyncua.client.ua_session import SessionState, UaSession
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary

from collectors.opcua import compat_asyncua as compat

REPO = Path(__file__).resolve().parents[3]


def source_digest(obj) -> str:
    """SHA-256 of a function's source with its docstring and comments removed (formatting-only changes pass)."""
    text = textwrap.dedent(inspect.getsource(obj))
    text = re.sub(r'"""(.|\n)*?"""', "", text)
    text = "\n".join(line.split("#")[0].rstrip() for line in text.splitlines() if line.split("#")[0].strip())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def test_installed_asyncua_is_the_tested_and_pinned_version():
    installed = importlib.metadata.version("asyncua")
    assert installed == compat.TESTED_VERSION, (
        f"asyncua {installed} is installed but compat_asyncua.py was checked against {compat.TESTED_VERSION}; "
        "run this file's tests and the collector tests, then update TESTED_VERSION and the pins"
    )
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert f'"asyncua=={compat.TESTED_VERSION}"' in pyproject, "pyproject.toml must pin asyncua to TESTED_VERSION"
    constraints = (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines()
    assert f"asyncua=={compat.TESTED_VERSION}" in constraints, "constraints.txt must pin asyncua to TESTED_VERSION"


def test_session_internals_used_by_the_publish_loop():
    client = Client("opc.tcp://127.0.0.1:4840")
    session = client.uaclient.session
    assert isinstance(session, UaSession)
    # UaSession keeps its subscriptions' callbacks, its publish task and its state under these names ...
    assert session._subscription_callbacks == {} and session._publish_task is None
    assert session._state is SessionState.NEW and {"CLOSING", "CLOSED"} <= set(SessionState.__members__)
    # ... sends requests through _send_request(request, timeout) and returns the undecoded Buffer ...
    params = inspect.signature(UaSession._send_request).parameters
    assert list(params)[:3] == ["self", "request", "timeout"]
    # ... and starts its publish loop in ensure_publish_loop when a subscription is created (we override that rule).
    assert "self.ensure_publish_loop()" in inspect.getsource(UaSession.create_subscription)
    assert source_digest(UaSession.ensure_publish_loop) == "f359cb5e9a07e749", (
        "UaSession.ensure_publish_loop changed: compare it with PublishLoopSession.ensure_publish_loop"
    )


def test_publish_loop_session_runs_our_loop_on_one_client_only():
    class Loop(compat.PublishLoopSession):
        ran = 0

        async def publish_loop(self) -> None:
            type(self).ran += 1

    async def main() -> None:
        ours, other = Client("opc.tcp://127.0.0.1:4840"), Client("opc.tcp://127.0.0.1:4840")
        session = compat.use_session_class(ours, Loop)
        assert type(ours.uaclient.session) is Loop and type(other.uaclient.session) is UaSession
        assert not session.closing and session.subscription_callback(7) is None
        session._subscription_callbacks[7] = print  # what create_subscription does with the server's id
        session.ensure_publish_loop()
        await session._publish_task
        assert Loop.ran == 1 and session.subscription_callback(7) is print
        session._state = SessionState.CLOSING
        assert session.closing

    asyncio.run(main())


def test_buffer_exposes_its_bytes_and_position():
    header = ua.ResponseHeader(RequestHandle=42)
    data = b"\xff\xfe" + struct_to_binary(header) + b"tail"
    buf = Buffer(data, 2, len(data) - 2)
    assert compat.buffer_state(buf) == (data, 2, len(data) - 2)
    assert struct_from_binary(ua.ResponseHeader, buf).RequestHandle == 42
    assert compat.buffer_position(buf) == len(data) - 4
    assert bytes(compat.buffer_state(buf)[0][compat.buffer_position(buf):]) == b"tail"


def test_watchdog_hook_replaces_the_client_keepalive_body():
    # Client's watchdog loop calls _wait_for_health_signal each tick; WatchdogClient re-implements that method's body
    # (subscribe to state changes for _watchdog_intervall, then probe server_state) with recently_alive() in front.
    assert "await self._wait_for_health_signal()" in inspect.getsource(Client)
    assert source_digest(Client._wait_for_health_signal) == "6641e487c8cb4e33", (
        "Client._wait_for_health_signal changed: compare it with WatchdogClient._wait_for_health_signal"
    )
    client = compat.WatchdogClient("opc.tcp://127.0.0.1:4840", watchdog_intervall=2.5)
    assert client.watchdog_interval_s == 2.5 and client.session_timeout > 0


def test_first_cert_from_chain_returns_the_leaf():
    from asyncua.crypto.cert_gen import (
        generate_private_key,
        generate_self_signed_app_certificate,
    )
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    def der(uri: str) -> bytes:  # a real certificate, made the way the collector makes its own
        cert = generate_self_signed_app_certificate(generate_private_key(), uri, {"organizationName": "test"},
                                                    [x509.UniformResourceIdentifier(uri)], extended=[])
        return cert.public_bytes(Encoding.DER)

    first, second = der("urn:test:1"), der("urn:test:2")
    assert first != second
    assert compat.first_cert_from_chain(first + second) == first
    assert compat.first_cert_from_chain(first) == first


def test_received_messages_are_seen_before_asyncua_processes_them():
    client = Client("opc.tcp://127.0.0.1:4840")
    seen: list = []
    assert compat.on_received_messages(client, seen.append)
    proto = client.uaclient._make_protocol()
    proto._process_received_message(None)  # asyncua ignores None; we must still have seen it
    assert seen == [None]
    assert client.uaclient.protocol is proto, "UaClient._make_protocol no longer stores the protocol it makes"


def test_user_token_policies_after_create_session():
    client = Client("opc.tcp://127.0.0.1:4840")
    assert compat.user_token_policies(client) == []
    assert "self._policy_ids = ep.UserIdentityTokens" in inspect.getsource(Client.create_session)
