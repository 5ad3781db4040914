"""One MQTT connection on the asyncio loop: reconnect with backoff, a bounded
publish window, and the PUBACK reason code of every QoS 1 publish.

Why paho directly and not aiomqtt: aiomqtt 2.5's `publish()` does await the
PUBACK for QoS > 0, but its `on_publish` throws the reason code away (we need
it: 0x97 quota exceeded is retried, 0x87 not authorized is not), and a
reconnect means re-entering its context manager around every caller. So this
module does what aiomqtt does inside — paho's socket callbacks drive
`loop_read`/`loop_write` from `add_reader`/`add_writer`, plus a 1 s
`loop_misc` tick for keepalive — and keeps the reason codes. Every packet is
handled on the event-loop thread: a publish is one function call, with no lock
ping-pong against a paho network thread (`loop_start`). Only the blocking TCP
connect runs in the default executor, and while it runs the loop does not touch
the client (readers are unregistered, publishers wait for `connected`).

Sessions are persistent (MQTT 5: clean_start False + a session expiry;
3.1.1: clean_session False). Publishes paho holds un-acknowledged when the
connection drops are re-sent by paho (DUP) after the reconnect; receivers
de-duplicate by message id. The window (`inflight`) is a semaphore whose slot
is released only by the PUBACK, even when the waiting caller gave up, so paho
never holds more than `inflight` messages (its packet ids wrap at 65,535).

Inbound QoS 1 messages are acknowledged by paho as soon as `on_message`
returns, unless the link is made with `manual_ack=True`: then the receiver
takes `link.acker(message)` in `on_message` and calls it once the message is
safe (committed), so a process killed in between loses nothing — the broker
keeps the message in the session and re-sends it (DUP) after the reconnect. An
acker whose connection has since been lost sends nothing: the packet id
belongs to that connection's session state, and the broker re-sends the
message on the new connection, where its own acker answers it.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger("warnd.mqtt")

MISC_SECONDS = 1.0


class Disconnected(Exception):
    """Not connected to the broker within the time allowed."""


class PublishTimeout(Exception):
    """Connected, but the broker did not acknowledge within the time allowed."""


class PublishError(Exception):
    """paho refused the publish locally (queue full, packet id in use …)."""

    def __init__(self, rc: int) -> None:
        super().__init__(mqtt.error_string(rc))
        self.rc = rc


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None


def parse_url(url: str) -> BrokerAddress:
    """mqtt://[user[:pass]@]host[:1883] or mqtts://…[:8883]."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
        raise ValueError(f"not an MQTT URL: {url!r}")
    tls = parts.scheme in ("mqtts", "ssl")
    return BrokerAddress(parts.hostname, parts.port or (8883 if tls else 1883), tls,
                         unquote(parts.username) if parts.username else None,
                         unquote(parts.password) if parts.password else None)


@lru_cache(maxsize=4096)  # building Properties is slow (~0.2 ms); paho only reads them
def publish_properties(expiry_seconds: int | None) -> Properties | None:
    """MQTT 5 PUBLISH properties with a Message Expiry Interval (shared: do not modify)."""
    if expiry_seconds is None:
        return None
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = expiry_seconds
    return props


class _Window:
    """A counting semaphore whose release hands the slot straight to the oldest waiter.

    asyncio.Semaphore (3.11) rescans its waiters on every release: O(n²) for a
    fan-out of thousands.
    """

    def __init__(self, size: int) -> None:
        self.free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    def try_acquire(self) -> bool:
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return True
        return False

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot while being cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1


OnConnect = Callable[["MqttLink", bool], None]  # (link, session_present): subscribe here
OnMessage = Callable[[mqtt.MQTTMessage], None]


class Acker:
    """The PUBACK owed for one inbound message of a manual-ack link; call it once, on the loop thread."""

    __slots__ = ("_link", "_connection", "mid", "qos", "done")

    def __init__(self, link: "MqttLink", connection: int, mid: int, qos: int) -> None:
        self._link, self._connection, self.mid, self.qos = link, connection, mid, qos
        self.done = False

    def __call__(self) -> bool:
        """Acknowledge; False when not sent (already done, or the connection it came on is gone:
        the broker re-sends the message after the reconnect)."""
        if self.done:
            return False
        self.done = True
        return self._link._ack(self._connection, self.mid, self.qos)  # noqa: SLF001 - its own link


class MqttLink:
    def __init__(self, url: str, *, client_id: str, protocol: int = 5, inflight: int = 1000,
                 keepalive: int = 30, session_expiry: int = 3600, will: Will | None = None,
                 on_connect: OnConnect | None = None, on_message: OnMessage | None = None,
                 backoff: tuple[float, float] = (0.1, 10.0), manual_ack: bool = False) -> None:
        if protocol not in (4, 5):
            raise ValueError(f"MQTT protocol must be 4 or 5, not {protocol}")
        self.address = parse_url(url)
        self.protocol = protocol
        self.client_id = client_id
        self.keepalive = keepalive
        self.session_expiry = session_expiry
        self.backoff = backoff
        self._on_connect_hook = on_connect
        self._on_message_hook = on_message
        v5 = protocol == 5
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                                  clean_session=None if v5 else False, manual_ack=manual_ack)
        # Our semaphore is the window; paho's own limit would re-scan every queued
        # message on each PUBACK (O(n²) for a large fan-out).
        self.client.max_inflight_messages_set(0)
        if self.address.username:
            self.client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            self.client.tls_set()
        if will is not None:
            self.client.will_set(will.topic, will.payload, will.qos, will.retain)
        c = self.client
        c.on_connect, c.on_disconnect = self._on_connect, self._on_disconnect
        c.on_publish, c.on_message, c.on_subscribe = self._on_publish, self._on_message, self._on_subscribe
        c.on_socket_open, c.on_socket_close = self._on_socket_open, self._on_socket_close
        c.on_socket_register_write = self._on_register_write
        c.on_socket_unregister_write = self._on_unregister_write
        self.connected = asyncio.Event()
        self.connects = 0  # successful CONNACKs, for tests and metrics
        self.acks_sent = 0  # manual PUBACKs handed to paho
        self.acks_stale = 0  # manual acks not sent: their connection was gone (the broker re-sends)
        self._window = _Window(inflight)
        self._pending: dict[int, asyncio.Future[int] | None] = {}  # mid → waiter (None: gave up)
        self._lost = asyncio.Event()
        self._closing = False
        self._fds: tuple[int | None, int | None] = (None, None)  # (reader fd, writer fd)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._supervisor: asyncio.Task | None = None
        self._connecting: asyncio.Future | None = None

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Begin connecting (and reconnecting) in the background; see `connected`."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"mqtt-{self.client_id}")

    async def wait_connected(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.connected.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self, *, timeout: float = 2.0) -> None:
        """Disconnect cleanly (no Last Will) and stop reconnecting."""
        self._closing = True
        if self.connected.is_set():
            self.client.disconnect()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), timeout)
        await self._stop()

    async def drop(self) -> None:
        """Lose the connection without DISCONNECT, as a failing network would: the broker
        publishes the Last Will. No reconnect follows (the simulator's `drop_out_after`)."""
        self._closing = True
        sock = self.client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), 2.0)
        await self._stop()

    async def _stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._connecting is not None and not self._connecting.done():
            await asyncio.wait([self._connecting], timeout=10)  # a connect in the executor
            await asyncio.sleep(0)  # let its socket callbacks run before we undo them
        self._unwatch()
        with contextlib.suppress(Exception):
            self.client._sock_close()  # noqa: SLF001 - no public way to drop the socket silently
        self.connected.clear()
        for waiter in self._pending.values():
            if waiter is not None and not waiter.done():
                waiter.set_exception(Disconnected("link closed"))
        self._pending.clear()

    async def _supervise(self) -> None:
        delay = self.backoff[0]
        loop = asyncio.get_running_loop()
        while not self._closing:
            self._lost.clear()
            self._unwatch()
            self._connecting = loop.run_in_executor(None, self._connect_blocking)
            self._connecting.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved
            try:
                await asyncio.shield(self._connecting)  # a close() waits for it to end
            except (OSError, ValueError, mqtt.WebsocketConnectionError) as exc:
                log.warning("mqtt connect failed", extra={"client": self.client_id, "error": repr(exc)})
            else:
                misc = asyncio.create_task(self._misc())
                try:
                    await self._await_connack()
                    if self.connected.is_set():
                        delay = self.backoff[0]
                        await self._lost.wait()
                finally:
                    misc.cancel()
            if self._closing:
                return
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.backoff[1])

    def _connect_blocking(self) -> None:  # in the executor: the loop does not touch the client now
        host, port = self.address.host, self.address.port
        if self.protocol == 5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.session_expiry
            self.client.connect(host, port, self.keepalive, clean_start=False, properties=props)
        else:
            self.client.connect(host, port, self.keepalive)

    async def _await_connack(self) -> None:
        connack = asyncio.ensure_future(self.connected.wait())
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait({connack, lost}, timeout=max(self.keepalive, 5),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            connack.cancel()
            lost.cancel()
        if not self.connected.is_set() and not self._lost.is_set():
            log.warning("mqtt: no CONNACK", extra={"client": self.client_id})
            self._unwatch()
            self.client._sock_close()  # noqa: SLF001 - give up on this socket, try again

    async def _misc(self) -> None:
        while True:
            await asyncio.sleep(MISC_SECONDS)
            self.client.loop_misc()  # keepalive: PINGREQ, and a dead connection is noticed

    # --- publish and subscribe ---------------------------------------------------

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                      properties: Properties | None = None, timeout: float = 10.0) -> int:
        """Publish and wait for the broker's acknowledgement; return its reason code (0 for QoS 0).

        Raises Disconnected or PublishTimeout when `timeout` runs out, PublishError
        when paho refuses, ValueError for a bad topic or payload.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if not self._window.try_acquire():
            try:
                await asyncio.wait_for(self._window.acquire(), timeout)
            except TimeoutError:
                raise self._timeout_error() from None
        released = False
        try:
            while not self.connected.is_set():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise Disconnected("not connected to the broker")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.connected.wait(), remaining)
            info = self.client.publish(topic, payload, qos, retain, properties)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                raise PublishError(info.rc)  # NO_CONN: paho keeps it and sends it on reconnect
            if qos == 0:
                return 0
            waiter: asyncio.Future[int] = loop.create_future()
            self._pending[info.mid] = waiter
            released = True  # from here the PUBACK releases the slot
        finally:
            if not released:
                self._window.release()
        timer = loop.call_at(deadline, self._give_up, waiter)  # cheaper than wait_for per message
        try:
            return await waiter
        finally:
            timer.cancel()
            if self._pending.get(info.mid) is waiter:  # gave up: the slot stays taken until the PUBACK
                self._pending[info.mid] = None

    def _give_up(self, waiter: asyncio.Future) -> None:
        if not waiter.done():
            waiter.set_exception(self._timeout_error())

    def _timeout_error(self) -> Exception:
        if self.connected.is_set():
            return PublishTimeout("no PUBACK in time")
        return Disconnected("not connected to the broker")

    def subscribe(self, topics: list[tuple[str, int]]) -> None:
        """Subscribe (call from `on_connect`); a refused filter is logged."""
        rc, _ = self.client.subscribe(topics)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            log.warning("mqtt subscribe failed", extra={"client": self.client_id, "rc": int(rc)})

    def acker(self, message: mqtt.MQTTMessage) -> Acker:
        """The acknowledgement of `message`, to call once it is safe (a `manual_ack` link;
        take it inside `on_message`, which runs while that message's connection is current)."""
        return Acker(self, self.connects, message.mid, message.qos)

    def _ack(self, connection: int, mid: int, qos: int) -> bool:
        if qos == 0:
            return True  # nothing to acknowledge
        if threading.get_ident() != self._loop_thread:
            raise RuntimeError("MQTT acks are sent from the event loop thread")  # paho is not thread-safe
        # Not while a connect runs in the executor (connected is clear then), and never on a newer
        # connection: if its session was not resumed, the packet id may name another message.
        if connection != self.connects or not self.connected.is_set():
            self.acks_stale += 1
            return False
        rc = self.client.ack(mid, qos)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            self.acks_stale += 1
            return False
        self.acks_sent += 1
        return True

    # --- paho callbacks (all on the loop thread, except the socket ones during connect)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            log.warning("mqtt connection refused", extra={"client": self.client_id, "reason": str(reason_code)})
            return
        self.connects += 1
        self.connected.set()
        if self._on_connect_hook is not None:
            self._on_connect_hook(self, bool(flags.session_present))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if not self._closing:
            log.warning("mqtt disconnected", extra={"client": self.client_id, "reason": str(reason_code)})
        self.connected.clear()
        self._lost.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:  # noqa: ANN001
        if mid not in self._pending:
            return
        waiter = self._pending.pop(mid)
        self._window.release()
        if waiter is not None and not waiter.done():
            waiter.set_result(int(reason_code.value))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:  # noqa: ANN001
        for code in reason_codes:
            if code.is_failure:
                log.warning("mqtt subscription refused", extra={"client": self.client_id, "reason": str(code)})

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:  # noqa: ANN001
        if self._on_message_hook is not None:
            try:
                self._on_message_hook(message)
            except Exception:  # a bad message must not break the connection
                log.exception("mqtt message handler failed", extra={"topic": message.topic})

    # --- socket plumbing -------------------------------------------------------------

    def _call(self, fn: Callable[[], None]) -> None:
        if threading.get_ident() == self._loop_thread:
            fn()
        else:  # paho calls from the executor thread during connect
            self._loop.call_soon_threadsafe(fn)

    def _on_socket_open(self, client, userdata, sock) -> None:  # noqa: ANN001
        fd = sock.fileno()
        self._call(lambda: self._watch_read(fd))

    def _on_socket_close(self, client, userdata, sock) -> None:  # noqa: ANN001
        fd = sock.fileno()
        self._call(lambda: self._unwatch(fd))

    def _on_register_write(self, client, userdata, sock) -> None:  # noqa: ANN001
        fd = sock.fileno()
        self._call(lambda: self._watch_write(fd))

    def _on_unregister_write(self, client, userdata, sock) -> None:  # noqa: ANN001
        fd = sock.fileno()
        self._call(lambda: self._unwatch_write(fd))

    def _watch_read(self, fd: int) -> None:
        self._unwatch()
        self._loop.add_reader(fd, self._readable)
        self._fds = (fd, self._fds[1])

    def _watch_write(self, fd: int) -> None:
        if self._fds[1] != fd:
            self._unwatch_write(self._fds[1])
            self._loop.add_writer(fd, self._writable)
            self._fds = (self._fds[0], fd)

    def _unwatch_write(self, fd: int | None) -> None:
        if fd is not None and self._fds[1] == fd:
            self._loop.remove_writer(fd)
            self._fds = (self._fds[0], None)

    def _unwatch(self, fd: int | None = None) -> None:
        reader, writer = self._fds
        if reader is not None and fd in (None, reader):
            self._loop.remove_reader(reader)
            reader = None
        if writer is not None and fd in (None, writer):
            self._loop.remove_writer(writer)
            writer = None
        self._fds = (reader, writer)

    def _readable(self) -> None:
        try:
            self.client.loop_read()
            sock = self.client.socket()
            while sock is not None and getattr(sock, "pending", lambda: 0)() > 0:  # TLS buffers
                self.client.loop_read()
                sock = self.client.socket()
        except Exception:  # noqa: BLE001 - paho normally reports through on_disconnect
            log.exception("mqtt read failed", extra={"client": self.client_id})
            self._force_lost()

    def _writable(self) -> None:
        try:
            self.client.loop_write()
        except Exception:  # noqa: BLE001
            log.exception("mqtt write failed", extra={"client": self.client_id})
            self._force_lost()

    def _force_lost(self) -> None:
        self._unwatch()
        with contextlib.suppress(Exception):
            self.client._sock_close()  # noqa: SLF001
        self.connected.clear()
        self._lost.set()
