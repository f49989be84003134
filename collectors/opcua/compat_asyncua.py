"""Every use of asyncua's private internals, in one place (tested with asyncua :data:`TESTED_VERSION`).

The collector needs a few things asyncua has no public API for; each is wrapped here so that an upgrade is checked in
one module, by ``collectors/opcua/tests/test_compat_asyncua.py``, which fails naming the internal that changed:

- :class:`PublishLoopSession`: a ``UaSession`` whose publish loop is ours (several PublishRequests in flight, bulk
  decoding; see ``fastpublish.py``). Uses ``_subscription_callbacks``, ``_publish_task``, ``_state`` and
  ``_send_request``; installed on one client's session with :func:`use_session_class`.
- :func:`buffer_state` / :func:`buffer_position`: the bytes and read position of an ``asyncua.common.utils.Buffer``
  (``_data``, ``_cur_pos``, ``_size``), for the struct-based decoder.
- :class:`WatchdogClient`: a ``Client`` whose keep-alive may accept other proof of life than its probe Read
  (overrides ``_wait_for_health_signal``, reads ``_watchdog_intervall``).
- :func:`first_cert_from_chain`: the server certificate out of an endpoint's certificate chain.
- :func:`on_received_messages`: see every message the client's socket receives (wraps ``UaClient._make_protocol`` and
  the protocol's ``_process_received_message``), to read a refusal that asyncua turns into a bare AssertionError.
- :func:`user_token_policies`: the endpoint's user token policies after CreateSession (``Client._policy_ids``).

And two public-API helpers for its annotations' gaps: :func:`node_id` (plain int/str identifiers) and :func:`status_of`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState
from asyncua.client.ua_session import SessionState, UaSession
from asyncua.common.utils import Buffer

#: The asyncua release these internals were checked against (pinned in pyproject.toml and constraints.txt).
TESTED_VERSION = "2.1.0"


class PublishLoopSession(UaSession):
    """A ``UaSession`` whose publish loop is :meth:`publish_loop` (a subclass implements it)."""

    def ensure_publish_loop(self) -> None:
        # asyncua calls this when a subscription is added; same rule as its own: one loop while subscriptions exist.
        if self._subscription_callbacks and (self._publish_task is None or self._publish_task.done()):
            self._publish_task = asyncio.create_task(self.publish_loop())

    async def publish_loop(self) -> None:  # pragma: no cover - implemented by subclasses
        raise NotImplementedError

    def subscription_callback(self, subscription_id: int) -> Callable[..., Any] | None:
        """The callback asyncua registered for a subscription, or None."""
        return self._subscription_callbacks.get(subscription_id)

    @property
    def closing(self) -> bool:
        """True once the session is closing or closed."""
        return self._state in (SessionState.CLOSING, SessionState.CLOSED)

    async def send_publish(self, request: ua.PublishRequest) -> Buffer:
        """Send a PublishRequest without a client-side timeout (the server answers when it has data or a keep-alive)
        and return the undecoded response."""
        return await self._send_request(request, timeout=0)


_Session = TypeVar("_Session", bound=PublishLoopSession)


def use_session_class(client: Client, cls: type[_Session]) -> _Session:
    """Make this client's (only) session an instance of ``cls``; call before ``connect``."""
    session = client.uaclient.session
    session.__class__ = cls
    assert isinstance(session, cls)  # what the assignment above made it
    return session


def node_id(identifier: int | str, namespace: int = 0) -> ua.NodeId:
    """A NodeId of a plain numeric or string identifier (e.g. ``node_id(ua.ObjectIds.ObjectsFolder)``)."""
    # asyncua annotates NodeId's fields with its Int32/String/Int16 marker subclasses, yet takes (and itself passes)
    # plain int and str: a gap in its annotations, not a wrong call.
    return ua.NodeId(identifier, namespace)  # type: ignore[arg-type]


def status_of(dv: ua.DataValue) -> ua.StatusCode:
    """The status of a DataValue; Good when it has none (OPC UA: an omitted status is Good).

    asyncua's decoder always sets one (its default is Good), but annotates the field as optional.
    """
    return dv.StatusCode if dv.StatusCode is not None else ua.StatusCode()


def buffer_state(buf: Buffer) -> tuple[Any, int, int]:
    """(bytes, read position, remaining size) of a Buffer."""
    return buf._data, buf._cur_pos, buf._size


def buffer_position(buf: Buffer) -> int:
    """Read position of a Buffer in its underlying bytes."""
    return buf._cur_pos


class WatchdogClient(Client):
    """A ``Client`` whose keep-alive skips its probe Read when :meth:`recently_alive` says the session is alive."""

    def recently_alive(self, within_s: float) -> bool:  # pragma: no cover - implemented by subclasses
        """True when the session proved alive within the last ``within_s`` seconds [s]."""
        return False

    @property
    def watchdog_interval_s(self) -> float:
        """asyncua's keep-alive interval [s]."""
        return self._watchdog_intervall

    async def _wait_for_health_signal(self) -> None:
        # asyncua 2.1's loop body, with recently_alive() in front of its probe.
        async with self.uaclient.subscribe_state() as sub:
            with contextlib.suppress(TimeoutError):
                await sub.next_change(self._watchdog_intervall)
        if self.uaclient.state is UaClientState.CONNECTED:
            if self.recently_alive(self._watchdog_intervall):
                return
            probe_timeout = min(self.session_timeout / 1000 / 2, self._watchdog_intervall)
            await asyncio.wait_for(self.nodes.server_state.read_value(), timeout=probe_timeout)


def first_cert_from_chain(der: bytes) -> bytes:
    """The first (the server's own) certificate of a DER certificate chain."""
    from asyncua.client.client import _first_cert_from_chain

    return _first_cert_from_chain(der)


def on_received_messages(client: Client, record: Callable[[Any], None]) -> bool:
    """Call ``record(message)`` for every message this client's socket receives from now on (each new connection
    included), before asyncua processes it. Returns False when asyncua has no such hook (nothing is recorded)."""
    uaclient = client.uaclient
    make = getattr(uaclient, "_make_protocol", None)
    if make is None:
        return False

    def make_protocol():
        proto = make()
        process = getattr(proto, "_process_received_message", None)
        if process is not None:
            def process_received_message(msg):
                record(msg)
                return process(msg)

            proto._process_received_message = process_received_message
        return proto

    uaclient._make_protocol = make_protocol  # type: ignore[method-assign]  # the wrapping this function exists for
    return True


def user_token_policies(client: Client | None) -> list:
    """The endpoint's user token policies, known after CreateSession (empty before)."""
    return list(getattr(client, "_policy_ids", None) or [])
