"""Answers from people: SMS replies and key presses become confirmations, every one recorded."""
from __future__ import annotations

from dataclasses import dataclass

from warnd.clock import Clock
from warnd.config import Config
from warnd.domain.confirmation import Kind, ReplyDecision, interpret_reply
from warnd.store.confirmations import ConfirmationStore


@dataclass(frozen=True)
class Answer:
    decision: ReplyDecision
    language: str

    @property
    def text(self) -> str:
        return self.decision.answer_en if self.language.startswith("en") else self.decision.answer_zh


class Answers:
    def __init__(self, store: ConfirmationStore, config: Config, clock: Clock) -> None:
        self.store = store
        self.config = config
        self.clock = clock

    async def sms_reply(self, from_number: str, body: str, provider_ref: str | None) -> Answer:
        people = await self.store.people_by_phone(from_number)
        ids = [p for p, _ in people]
        items = await self.store.open_items(ids)
        decision = interpret_reply(body, self.config.sms.confirm_words, items)
        person = ids[0] if ids else None  # a number shared by several people: the first answers
        if decision.kind is Kind.CONFIRM:
            changed = await self.store.confirm(list(decision.confirmation_ids), person, "sms", self.clock.now())
            outcome = "confirmed" if changed else "repeated"
        else:
            outcome = decision.kind.value
        await self.store.record(at=self.clock.now(), channel="sms", from_address=from_number, body=body,
                                outcome=outcome, confirmation_ids=list(decision.confirmation_ids),
                                person_id=person, provider_ref=provider_ref)
        return Answer(decision, people[0][1] if people else "zh-CN")

    async def key_press(self, delivery_id: int, digits: str, from_number: str, call_ref: str | None) -> bool:
        """A digit pressed on a warning call; "1" confirms that warning for the callee."""
        found = await self.store.recipient_of(delivery_id)
        confirmed = False
        ids: list[int] = []
        person = None
        if found is not None and found[1] == "person" and digits.strip() == "1":
            warning_id, _, person = found
            items = await self.store.open_items([person], warning_id)
            ids = [i.confirmation_id for i in items]
            confirmed = await self.store.confirm(ids, person, "voice", self.clock.now()) > 0 or not items
        await self.store.record(at=self.clock.now(), channel="voice", from_address=from_number, body=digits,
                                outcome="confirmed" if confirmed and ids else ("repeated" if confirmed else "ignored"),
                                confirmation_ids=ids, person_id=person, delivery_id=delivery_id,
                                provider_ref=call_ref)
        return confirmed

    async def link_confirm(self, warning_id: int, person_id: str) -> int:
        """A click on a signed confirmation link: confirms that person's open requirements of the warning.

        Returns how many requirements it confirmed (0 when already confirmed or nothing was open)."""
        items = await self.store.open_items([person_id], warning_id)
        ids = [i.confirmation_id for i in items]
        changed = await self.store.confirm(ids, person_id, "link", self.clock.now())
        await self.store.record(at=self.clock.now(), channel="link", from_address=person_id, body="",
                                outcome="confirmed" if changed else "repeated", confirmation_ids=ids,
                                person_id=person_id)
        return changed

    async def operator_confirm(self, confirmation_id: int, person_id: str | None, operator: str,
                               reason: str) -> int:
        """An operator records a confirmation given by phone on someone's behalf (audited)."""
        changed = await self.store.confirm([confirmation_id], person_id or operator, "operator",
                                           self.clock.now(), reason=reason, actor=operator)
        await self.store.record(at=self.clock.now(), channel="operator", from_address=operator, body=reason,
                                outcome="confirmed" if changed else "repeated", confirmation_ids=[confirmation_id],
                                person_id=person_id)
        return changed
