"""Answers from people: SMS replies, key presses and link taps become confirmations, every one recorded.

What an answer confirms is what its sender was asked (warnd.domain.confirmation): their own
grid, the grids a rung asked them about, a backed-up grid only when named (or with
`confirmation.backups_confirm_first_wave`). A provider's message is applied once (its
MessageSid or CallSid is the key, see ConfirmationStore.answer): a replay, even one after
a new warning opened, confirms nothing and is told apart (`Answer.replayed`, `key_press` None).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from warnd.clock import Clock
from warnd.config import Config
from warnd.engine.liaison import liaison_report
from warnd.domain.confirmation import Kind, OpenItem, ReplyDecision, confirmable, interpret_reply, key_press_answer
from warnd.domain.sending import InboundKind
from warnd.store.confirmations import ConfirmationStore, Confirming, Inbound, Sender, asking_regions
from warnd_channels.registry import SPECS


@dataclass(frozen=True)
class Answer:
    decision: ReplyDecision
    language: str
    replayed: bool = False  # this MessageSid was applied before: nothing changed

    @property
    def text(self) -> str:
        return self.decision.answer_en if self.language.startswith("en") else self.decision.answer_zh


@dataclass(frozen=True)
class KeyPress:
    """A key press on a warning call, and what the call says back (in the callee's language)."""

    kind: Kind  # CONFIRM (also when it was confirmed before), NOT_ASKED, NOT_A_CONFIRMATION
    language: str
    drill: bool

    @property
    def confirmed(self) -> bool:
        return self.kind is Kind.CONFIRM

    @property
    def text(self) -> str:
        zh, en = key_press_answer(self.kind, self.drill)
        return en if self.language.startswith("en") else zh


class Answers:
    def __init__(self, store: ConfirmationStore, config: Config, clock: Clock) -> None:
        self.store = store
        self.config = config
        self.clock = clock

    @property
    def backups_confirm(self) -> bool:
        return self.config.confirmation.backups_confirm_first_wave

    def channel_for(self, kind: InboundKind) -> str:
        """The channel an answer of this kind came by when the caller did not say: the first
        enabled one that takes such answers (tools and tests name none)."""
        enabled = set(self.config.enabled_channels())
        takers = [name for name, spec in SPECS.items() if spec.takes(kind)]
        return next((name for name in takers if name in enabled), takers[0])

    async def sms_reply(self, from_number: str, body: str, provider_ref: str | None,
                        received_at: datetime | None = None, channel: str | None = None) -> Answer:
        """A reply, now (the webhook) or at `received_at` (fetched from the provider's log
        after a restart: it answers what was open then, and is late or not by that time).
        A door-to-door walker's count ("已转移12人") is their list's report, not a reply."""
        channel = channel or self.channel_for(InboundKind.REPLIES)
        report = await liaison_report(self.store.db, self.config, from_number, body, provider_ref,
                                      received_at or self.clock.now(), channel)
        if report is not None:
            return Answer(report.decision, report.language, report.replayed)
        words, backups_confirm = self.config.sms.confirm_words, self.backups_confirm

        def decide(people: list[Sender], items: list[OpenItem]) -> tuple[Answer, Confirming]:
            decision = interpret_reply(body, words, items, backups_confirm=backups_confirm)
            by = {i.confirmation_id: i.person_id for i in items if i.confirmation_id in decision.confirmation_ids}
            # a number shared by several people: the one who answers for what it confirms, else the first
            person = next(iter(by.values()), None) or (people[0].id if people else None)
            confirming = decision.kind is Kind.CONFIRM
            outcome = (lambda n: ("confirmed" if n else "repeated")) if confirming else (lambda n: decision.kind.value)
            answer = Answer(decision, people[0].language if people else "zh-CN")
            return answer, Confirming(person, list(decision.confirmation_ids), outcome, confirming, by)

        answer, changed = await self.store.reply(
            Inbound(received_at or self.clock.now(), channel, from_number, body, None, provider_ref=provider_ref),
            received_at, decide)
        return answer if changed is not None else Answer(answer.decision, answer.language, replayed=True)

    async def key_press(self, delivery_id: int, digits: str, from_number: str,
                        call_ref: str | None, channel: str | None = None) -> KeyPress | None:
        """A digit pressed on a warning call; "1" confirms what the callee was asked in that
        warning (their grid; a grid whose rung called them). None when this call's key press
        was applied before."""
        call = await self.store.call_of(delivery_id)
        person = call.recipient_id if call is not None and call.recipient_kind == "person" else None
        kind, ids = Kind.NOT_A_CONFIRMATION, []
        if person is not None and digits.strip() == "1":
            items = await self.open_for(person, call.warning_id, unasked=True)
            chosen = confirmable(items, backups_confirm=self.backups_confirm)
            ids = [i.confirmation_id for i in chosen]
            # "1" with nothing open (confirmed before, by any means) still counts as confirmed
            kind = Kind.NOT_ASKED if items and not chosen else Kind.CONFIRM
        outcome = (lambda n: "confirmed" if n else "repeated") if kind is Kind.CONFIRM else (lambda n: kind.value)
        channel = channel or self.channel_for(InboundKind.KEY_PRESSES)
        changed = await self.store.answer(Inbound(self.clock.now(), channel, from_number, digits, person,
                                                  delivery_id, call_ref), ids, outcome)
        if changed is None:
            return None
        return KeyPress(kind, call.language if call else "zh-CN", call.drill if call else False)

    async def open_for(self, person_id: str, warning_id: int, *, unasked: bool = False) -> list[OpenItem]:
        """What this person answers for in a warning; without `unasked`, what their "1", key
        press or link tap confirms (the confirmation page asks this)."""
        found = await self.store.person(person_id)
        warning_id = await self.store.answered_version(warning_id)  # a call or link of before an Update
        items = await self.store.open_items([person_id], warning_id, unasked=True,
                                            regions_of=asking_regions([found] if found else []))
        return items if unasked else confirmable(items, backups_confirm=self.backups_confirm)

    async def link_confirm(self, warning_id: int, person_id: str) -> int:
        """A click on a signed confirmation link: confirms what that person was asked in the warning.

        Audited with the person as the actor: the link is signed for them alone, so unlike an
        SMS from a shared number it says who answered. Returns how many requirements it
        confirmed (0 when already confirmed or nothing was open)."""
        ids = [i.confirmation_id for i in await self.open_for(person_id, warning_id)]
        return await self.store.answer(Inbound(self.clock.now(), "link", person_id, "", person_id), ids,
                                       lambda n: "confirmed" if n else "repeated", actor=person_id,
                                       action="confirmation.link")

    async def operator_confirm(self, confirmation_id: int, person_id: str | None, operator: str,
                               reason: str) -> int:
        """An operator records a confirmation given by phone on someone's behalf (audited)."""
        return await self.store.answer(Inbound(self.clock.now(), "operator", operator, reason, person_id),
                                       [confirmation_id], lambda n: "confirmed" if n else "repeated",
                                       confirmed_by=person_id or operator, reason=reason, actor=operator)
