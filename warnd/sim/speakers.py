"""Simulated village loudspeakers: real MQTT clients speaking warnd's speaker protocol.

Each speaker subscribes to `{prefix}/{id}/cmd` (QoS 1, persistent session),
publishes a retained `{prefix}/{id}/status` (online; its Last Will is offline),
and answers a play command with acks received → playing → played on
`{prefix}/{id}/ack` (a played/failed ack is published again, with backoff,
while the PUBACK says 0x10 no matching subscribers). It drops a message id it has seen, never plays a command
past its `expires` (acks failed "expired"), stops and forgets the warnings a
`stop` names (acked played when done) and those a newer play `references`.

Behaviours per speaker (`Behaviour`): offline (never connects; a retained
offline status is published for it), ack_after (seconds of playing before the
played-ack), lost_acks (plays, never acks), late_ack (extra seconds before the
played-ack), drop_out_after (seconds after its first play command it loses its
connection without DISCONNECT, so the broker publishes its Last Will),
fail_play (acks failed). `speed` divides every delay.

Two modes. One MQTT client per speaker (default; fine up to a few hundred), or
`multiplexed=True`: one client subscribed to `{prefix}/+/cmd` answering for
every speaker id of the fleet (the benchmark's 5,000 speakers). A multiplexed
fleet has no per-speaker Last Will: its drop_out_after publishes the retained
offline status instead.

In-process:  fleet = SpeakerFleet(500); await fleet.start("mqtt://127.0.0.1:1883")
             await fleet.wait_until(lambda f: f.played_count() == 500, timeout=30); await fleet.stop()
As a process: (`warnd sim speakers --help` lists every option, in English and Chinese)
              python -m warnd.sim.speakers --broker mqtt://… --count N [--prefix P]
             [--behaviours FILE.json] [--multiplexed] [--protocol 4|5] [--speed S]
             (FILE: {"*": {default behaviour}, "<speaker id>": {…}}; prints "ready N" when
             subscribed, a JSON summary on SIGINT/SIGTERM)
"""
from __future__ import annotations

import asyncio
import json
import logging
import secrets
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import NamedTuple

from warnd_channels.mqtt_link import Disconnected, MqttLink, PublishError, PublishTimeout, Will

log = logging.getLogger("warnd.sim.speakers")
ACK_TIMEOUT = 60.0  # seconds an ack may wait for the broker
NO_SUBSCRIBERS = 0x10  # PUBACK reason: nobody subscribed (MQTT 5)
FINAL_ACKS = frozenset({"played", "failed"})


@dataclass(frozen=True)
class Behaviour:
    offline: bool = False
    ack_after: float = 0.0
    lost_acks: bool = False
    late_ack: float = 0.0
    drop_out_after: float | None = None
    fail_play: bool = False

    @classmethod
    def from_dict(cls, data: Mapping) -> "Behaviour":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown behaviours: {sorted(unknown)}")
        return cls(**data)


class Played(NamedTuple):
    message_id: str
    identifier: str
    at: float  # Unix time


def _status(online: bool) -> bytes:
    return json.dumps({"online": online, "at": datetime.now(timezone.utc).isoformat()}).encode()


def _expired(expires: object) -> bool:
    if not isinstance(expires, str):
        return False
    try:
        moment = datetime.fromisoformat(expires)
    except ValueError:
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment <= datetime.now(timezone.utc)


@dataclass
class SimSpeaker:
    id: str
    behaviour: Behaviour
    seen: set[str] = field(default_factory=set)
    forgotten: set[str] = field(default_factory=set)  # identifiers stopped or replaced
    playing: dict[str, asyncio.Task] = field(default_factory=dict)  # identifier → its playback
    link: MqttLink | None = None  # own client (not multiplexed)
    drop_scheduled: bool = False
    dropped: bool = False


class SpeakerFleet:
    def __init__(self, speakers: int | Sequence[str], *, prefix: str = "warnd/speakers",
                 behaviours: Mapping[str, Behaviour] | None = None, default: Behaviour = Behaviour(),
                 multiplexed: bool = False, protocol: int = 5, speed: float = 1.0,
                 connect_timeout: float = 60.0) -> None:
        ids = [f"spk-{i:05d}" for i in range(speakers)] if isinstance(speakers, int) else list(speakers)
        behaviours = behaviours or {}
        self.speakers = {sid: SimSpeaker(sid, behaviours.get(sid, default)) for sid in ids}
        self.prefix = prefix.rstrip("/")
        self.multiplexed = multiplexed
        self.protocol = protocol
        self.speed = speed
        self.connect_timeout = connect_timeout
        self.played: dict[str, list[Played]] = {sid: [] for sid in ids}
        self.stopped: dict[str, list[str]] = {sid: [] for sid in ids}  # identifiers stopped mid-play
        self.expired: dict[str, list[str]] = {sid: [] for sid in ids}  # message ids refused as expired
        self.duplicates = 0
        self.commands = 0
        self.acks_lost = 0  # acks the broker never took (gave up after ACK_TIMEOUT)
        self.acks_resent = 0  # final acks published again after a "no matching subscribers"
        self.on_played: Callable[[str, Played], None] | None = None
        self._tag = secrets.token_hex(3)
        self._control: MqttLink | None = None  # statuses of offline speakers; everything when multiplexed
        self._plays = 0
        self._waiters: list[tuple[Callable[[SpeakerFleet], bool], asyncio.Future]] = []
        self._wake_scheduled = False
        self._tasks: set[asyncio.Task] = set()

    # --- lifecycle -------------------------------------------------------------------

    async def start(self, broker_url: str) -> None:
        """Connect every online speaker; return once all are subscribed and announced."""
        self.url = broker_url
        self._control = self._link("control", subscribe=self.multiplexed)
        await self._control.start()
        waits = [self._announce(self._control, sid, False) for sid, sp in self.speakers.items()
                 if sp.behaviour.offline]
        if self.multiplexed:
            waits += [self._announce(self._control, sid, True) for sid, sp in self.speakers.items()
                      if not sp.behaviour.offline]
        else:
            for sp in self.speakers.values():
                if not sp.behaviour.offline:
                    sp.link = self._link(sp.id, will=sp.id)
                    await sp.link.start()
                    waits.append(self._announce(sp.link, sp.id, True))
        await asyncio.wait_for(asyncio.gather(*waits), self.connect_timeout)

    def _link(self, name: str, *, subscribe: bool = True, will: str | None = None) -> MqttLink:
        topic = f"{self.prefix}/+/cmd" if name == "control" else f"{self.prefix}/{name}/cmd"

        def on_connect(link: MqttLink, session_present: bool) -> None:
            if subscribe:
                link.subscribe([(topic, 1)])
            if will is not None and link.connects > 1:  # back after a broker restart: online again
                self._spawn(self._announce(link, will, True))

        return MqttLink(self.url, client_id=f"sim-{self._tag}-{name}", protocol=self.protocol,
                        inflight=1000, keepalive=30, on_connect=on_connect, on_message=self._on_message,
                        will=Will(self._topic(will, "status"), _status(False)) if will else None,
                        backoff=(0.05, 1.0))

    async def _announce(self, link: MqttLink, sid: str, online: bool) -> None:
        # After a SUBSCRIBE, the broker handles this PUBLISH in order: its PUBACK means subscribed.
        await link.publish(self._topic(sid, "status"), _status(online), qos=1, retain=True,
                           timeout=self.connect_timeout)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        links = [sp.link for sp in self.speakers.values() if sp.link and not sp.dropped]
        await asyncio.gather(*(link.close() for link in links if link is not None),
                             self._control.close() if self._control else asyncio.sleep(0))

    async def pause(self, sid: str) -> None:
        """Disconnect one speaker cleanly; its session (and queued commands) stays at the broker."""
        await self.speakers[sid].link.close()

    async def resume(self, sid: str) -> None:
        sp = self.speakers[sid]
        sp.link = self._link(sid, will=sid)
        await sp.link.start()
        await self._announce(sp.link, sid, True)

    # --- records -----------------------------------------------------------------------

    def played_count(self) -> int:
        return self._plays

    def play_counts(self) -> dict[str, int]:
        return {sid: len(v) for sid, v in self.played.items()}

    async def wait_until(self, predicate: Callable[["SpeakerFleet"], bool], timeout: float) -> None:
        """Wait (at most `timeout` s) until `predicate(fleet)` holds; raise TimeoutError if not.

        The predicate is re-checked whenever the fleet's records change (once per loop turn).
        """
        if predicate(self):
            return
        entry = (predicate, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(entry[1], timeout)
        finally:
            self._waiters.remove(entry)

    def _changed(self) -> None:
        if not self._wake_scheduled and self._waiters:
            self._wake_scheduled = True
            asyncio.get_running_loop().call_soon(self._wake)

    def _wake(self) -> None:
        self._wake_scheduled = False
        for predicate, future in list(self._waiters):
            if not future.done() and predicate(self):
                future.set_result(None)

    # --- commands ------------------------------------------------------------------------

    def _topic(self, sid: str, kind: str) -> str:
        return f"{self.prefix}/{sid}/{kind}"

    def _on_message(self, message) -> None:  # noqa: ANN001 - paho MQTTMessage, on the loop thread
        sid = message.topic[len(self.prefix) + 1:].rpartition("/")[0]
        sp = self.speakers.get(sid)
        if sp is None or sp.dropped:
            return
        try:
            command = json.loads(message.payload)
            message_id = command["message_id"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            log.warning("malformed command", extra={"speaker": sid})
            return
        self.commands += 1
        if message_id in sp.seen:  # de-duplicate before anything awaits
            self.duplicates += 1
            return
        sp.seen.add(message_id)
        self._spawn(self._handle(sp, command))

    def _spawn(self, coro) -> None:  # noqa: ANN001
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, sp: SimSpeaker, command: dict) -> None:
        message_id, behaviour = command["message_id"], sp.behaviour
        identifier = str(command.get("identifier", ""))
        if command.get("type") == "stop":
            for ident in command.get("references") or []:
                self._forget(sp, str(ident))
            self._changed()
            return await self._ack(sp, message_id, "played", "stopped")
        if _expired(command.get("expires")):
            self.expired[sp.id].append(message_id)
            self._changed()
            return await self._ack(sp, message_id, "failed", "expired")
        if identifier in sp.forgotten:
            return await self._ack(sp, message_id, "failed", "cancelled")
        for ident in command.get("references") or []:  # an update replaces what it references
            self._forget(sp, str(ident))
        if behaviour.drop_out_after is not None and not sp.drop_scheduled:
            sp.drop_scheduled = True
            self._spawn(self._drop_later(sp, behaviour.drop_out_after / self.speed))
        await self._ack(sp, message_id, "received")
        if behaviour.fail_play:
            return await self._ack(sp, message_id, "failed", "amplifier fault")
        playback = asyncio.create_task(self._play(sp, message_id, identifier))
        sp.playing[identifier] = playback
        try:
            await playback
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():
                raise
            return  # stopped: no played-ack
        finally:
            if sp.playing.get(identifier) is playback:
                del sp.playing[identifier]
        if behaviour.late_ack:
            await asyncio.sleep(behaviour.late_ack / self.speed)
        await self._ack(sp, message_id, "played")

    async def _play(self, sp: SimSpeaker, message_id: str, identifier: str) -> None:
        record = Played(message_id, identifier, time.time())
        self.played[sp.id].append(record)
        self._plays += 1
        if self.on_played is not None:
            self.on_played(sp.id, record)
        self._changed()
        await self._ack(sp, message_id, "playing")
        if sp.behaviour.ack_after:
            await asyncio.sleep(sp.behaviour.ack_after / self.speed)

    def _forget(self, sp: SimSpeaker, identifier: str) -> None:
        sp.forgotten.add(identifier)
        task = sp.playing.pop(identifier, None)
        if task is not None and not task.done():
            task.cancel()
            self.stopped[sp.id].append(identifier)

    async def _ack(self, sp: SimSpeaker, message_id: str, state: str, detail: str = "") -> None:
        """Publish an ack. A final one (played/failed) is re-published while the broker
        answers 0x10 "no matching subscribers": no warnd node listens right now."""
        if sp.dropped or sp.behaviour.lost_acks:
            return
        body = json.dumps({"message_id": message_id, "state": state} | ({"detail": detail} if detail else {}))
        link = sp.link or self._control
        loop = asyncio.get_running_loop()
        deadline, pause = loop.time() + ACK_TIMEOUT, 0.05
        try:
            while True:
                reason = await link.publish(self._topic(sp.id, "ack"), body.encode(), qos=1,
                                            timeout=max(deadline - loop.time(), 0.001))
                if reason != NO_SUBSCRIBERS or state not in FINAL_ACKS or loop.time() > deadline:
                    return
                self.acks_resent += 1
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
        except (Disconnected, PublishTimeout, PublishError):
            self.acks_lost += 1
            log.warning("ack not published", extra={"speaker": sp.id, "state": state})

    async def _drop_later(self, sp: SimSpeaker, delay: float) -> None:
        await asyncio.sleep(delay)
        sp.dropped = True
        for task in list(sp.playing.values()):
            task.cancel()
        if sp.link is not None:
            await sp.link.drop()  # no DISCONNECT: the broker publishes the Last Will
        else:
            await self._announce(self._control, sp.id, False)
        self._changed()


# --- the process ---------------------------------------------------------------------------

def load_behaviours(path: str | None) -> tuple[Behaviour, dict[str, Behaviour]]:
    if not path:
        return Behaviour(), {}
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict) or not all(isinstance(b, dict) for b in data.values()):
        raise ValueError(f"{path}: expected {{\"*\": {{…}}, \"<speaker id>\": {{…}}}}")
    default = Behaviour.from_dict(data.get("*", {}))
    return default, {sid: Behaviour.from_dict(b) for sid, b in data.items() if sid != "*"}


def serve(broker: str, count: int = 10, *, prefix: str = "warnd/speakers", default: Behaviour = Behaviour(),
          behaviours: Mapping[str, Behaviour] | None = None, multiplexed: bool = False, protocol: int = 5,
          speed: float = 1.0) -> int:
    """Answer as `count` speakers until SIGINT or SIGTERM (`warnd sim speakers`); the exit code."""
    fleet = SpeakerFleet(count, prefix=prefix, behaviours=behaviours, default=default,
                         multiplexed=multiplexed, protocol=protocol, speed=speed)
    return asyncio.run(_serve(fleet, broker))


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m warnd.sim.speakers`: the click command `warnd sim speakers` (exits)."""
    from warnd.sim.cli import speakers
    speakers.main(args=None if argv is None else list(argv), prog_name="python -m warnd.sim.speakers")


async def _serve(fleet: SpeakerFleet, url: str) -> int:
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    await fleet.start(url)
    print(f"ready {len(fleet.speakers)}", flush=True)
    await done.wait()
    await fleet.stop()
    print(json.dumps({"played": fleet.played_count(), "duplicates": fleet.duplicates,
                      "commands": fleet.commands, "acks_lost": fleet.acks_lost,
                      "expired": sum(len(v) for v in fleet.expired.values())}), flush=True)
    return 0


if __name__ == "__main__":
    main()
