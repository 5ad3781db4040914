"""The outside world of a simulation: phones, loudspeakers and subscribers, all at the scenario's speed.

`World.start()` runs the Twilio simulator (in this process), the webhook sink
and, when speakers are in play, an MQTT broker (embedded, or the one given)
with a speaker fleet. `config()` is what warnd needs to reach them. `facts()`
is what they received, as plain data for the report (the outside view).
"""
from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from warnd.sim.broker import start_embedded_broker
from warnd.sim.speakers import SpeakerFleet
from warnd.sim.twilio import TwilioSimulator
from warnd.sim.twilio_behaviour import Scenario as PhoneScenario
from warnd.sim.webhook_sink import WebhookSink
from warnd.simulate.scenario import Scenario

FROM_NUMBER = "+15005550006"
MULTIPLEX_ABOVE = 200  # speakers: one MQTT client for the whole fleet above this many


class World:
    def __init__(self, scenario: Scenario, speed: float, warnd_url: str) -> None:
        self.scenario, self.speed, self.warnd_url = scenario, speed, warnd_url
        self.sid, self.token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
        self.fleet: SpeakerFleet | None = None
        self.broker: tuple[str, int] | None = None  # (url, MQTT protocol)
        self.stops: list[Callable[[], Awaitable[None]]] = []  # in start order

    async def start(self, mqtt: dict | None) -> None:
        """Start every simulator; `mqtt` is warnd's mqtt config when speakers are used, else None."""
        sc = self.scenario
        # fault windows count from T+0: the runner sets `epoch` once it knows it (until then, from now)
        phones = PhoneScenario(numbers=dict(sc.phones), faults=sc.faults, speed=self.speed,
                               inbound_sms_url=f"{self.warnd_url}/providers/sms/replies", windows=sc.fault_windows)
        self.twilio = TwilioSimulator(self.sid, self.token, phones, seed=sc.seed, callback_limit=200)
        await self.twilio.start()
        self.stops.append(self.twilio.stop)
        subscribers = sc.directory.subscribers
        self.sink = WebhookSink({f"/{s.id}": s.secret for s in subscribers}, seed=sc.seed)
        await self.sink.start()
        self.stops.append(self.sink.stop)
        for s in subscribers:
            b = sc.subscribers.get(s.id)
            if b is not None:
                self.sink.configure(f"/{s.id}", latency=b.latency / self.speed, fail_rate=b.fail_rate,
                                    status=b.status)
        if mqtt is None:
            return
        if mqtt.get("url"):
            self.broker = (mqtt["url"], int(mqtt.get("protocol", 5)))
        else:
            embedded = await start_embedded_broker(0)
            self.stops.append(embedded.stop)
            self.broker = (embedded.url, embedded.protocol)
        ids = [s.id for s in sc.directory.speakers]
        multiplexed = sc.multiplexed if sc.multiplexed is not None else len(ids) > MULTIPLEX_ABOVE
        self.fleet = SpeakerFleet(ids, prefix=mqtt.get("topic_prefix", "warnd/speakers"), behaviours=sc.speakers,
                                  default=sc.speaker_default, multiplexed=multiplexed, protocol=self.broker[1],
                                  speed=self.speed)
        await self.fleet.start(self.broker[0])
        self.stops.append(self.fleet.stop)

    async def stop(self) -> None:
        for stop in reversed(self.stops):
            try:
                await stop()
            except Exception:  # noqa: BLE001 - keep stopping the others
                pass
        self.stops = []

    def twilio_config(self) -> dict:
        return {"account_sid": self.sid, "auth_token": self.token, "api_base_url": self.twilio.base_url,
                "from_number": FROM_NUMBER}

    def subscriber_url(self, subscriber_id: str) -> str:
        return self.sink.url(f"/{subscriber_id}")

    def counts(self) -> dict[str, int]:
        """What the simulators received so far (for the progress display)."""
        return {"sms": len(self.twilio.messages), "calls": len(self.twilio.calls), "replies": len(self.twilio.replies),
                "plays": self.fleet.played_count() if self.fleet else 0, "webhooks": self.sink.stats.unique}

    def facts(self) -> dict[str, Any]:
        """Everything received, as plain data: the outside view of the report."""
        sc = self.scenario
        sms = [{"sid": m.sid, "to": m.to, "body": m.body, "status": m.status, "callback": m.status_callback,
                "finished_at": m.updated_at} for m in self.twilio.messages.values()]
        calls = [{"sid": c.sid, "to": c.to, "status": c.status, "answered": c.start_time is not None,
                  "digits": c.digits, "callback": c.status_callback, "finished_at": c.end_time}
                 for c in self.twilio.calls.values()]
        plays = []  # every command a speaker received (by message id), and whether and when it played
        if self.fleet is not None:
            for sid, speaker in self.fleet.speakers.items():
                played = {p.message_id: p.at for p in self.fleet.played[sid]}
                plays += [{"speaker": sid, "message_id": mid, "played": mid in played, "at": played.get(mid)}
                          for mid in speaker.seen]
        webhooks = [{"path": r.path, "id": r.id, "at": r.received_at} for r in self.sink.records]
        silent = sorted(sid for sid, b in sc.speakers.items()
                        if b.lost_acks or b.drop_out_after is not None or b.late_ack or b.fail_play or b.offline)
        stats = {"twilio": vars(self.twilio.stats).copy(), "webhook_sink": vars(self.sink.stats).copy(),
                 "speakers": {"duplicates": self.fleet.duplicates, "commands": self.fleet.commands,
                              "acks_lost": self.fleet.acks_lost} if self.fleet else {}}
        return {"sms": sms, "calls": calls, "plays": plays, "webhooks": webhooks, "outside_stats": stats,
                "silent_speakers": silent}
