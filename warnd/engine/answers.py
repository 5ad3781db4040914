"""Answers from people: SMS replies and key presses become confirmations, every one recorded.

A provider's message is applied once (its MessageSid or CallSid is the key, see
ConfirmationStore.answer): a replay, even one after a new warning opened, confirms
nothing and is told apart (`Answer.replayed`, `key_press` None).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from warnd.clock import Clock
from warnd.config import Config
from warnd.domain.confirmation import Kind, ReplyDecision, interpret_reply
from warnd.store.confirmations import ConfirmationStore, Inbound


@dataclass(frozen=True)
class Answer:
    decision: ReplyDecision
    language: str
    replayed: bool = False  # this MessageSid was applied before: nothing changed

    @property
    def text(self) -> str:
        return self.decision.answer_en if self.language.startswith("en") else self.decision.answer_zh


class Answers:
    def __init__(self, store: ConfirmationStore, config: Config, clock: Clock) -> None:
        self.store = store
        self.config = config
        self.clock = clock

    async def sms_reply(self, from_number: str, body: str, provider_ref: str | None,
                        received_at: datetime | None = None) -> Answer:
        """A reply, now (the webhook) or at `received_at` (fetched from the provider's log
        after a restart: it answers what was open then, and is late or not by that time)."""
        people = await self.store.people_by_phone(from_number)
        ids = [p for p, _ in people]
        items = await self.store.open_items(ids, asked_by=received_at)
        decision = interpret_reply(body, self.config.sms.confirm_words, items)
        person = ids[0] if ids else None  # a number shared by several people: the first answers
        confirming = decision.kind is Kind.CONFIRM
        changed = await self.store.answer(
            Inbound(received_at or self.clock.now(), "sms", from_number, body, person, provider_ref=provider_ref),
            list(decision.confirmation_ids),
            lambda n: ("confirmed" if n else "repeated") if confirming else decision.kind.value, confirm=confirming)
        return Answer(decision, people[0][1] if people else "zh-CN", replayed=changed is None)

    async def key_press(self, delivery_id: int, digits: str, from_number: str, call_ref: str | None) -> bool | None:
        """A digit pressed on a warning call; "1" confirms that warning for the callee.

        Whether it counts as confirmed; None when this call's key press was applied before."""
        found = await self.store.recipient_of(delivery_id)
        ids: list[int] = []
        person = None
        pressed_1 = found is not None and found[1] == "person" and digits.strip() == "1"
        if pressed_1:
            warning_id, _, person = found
            ids = [i.confirmation_id for i in await self.store.open_items([person], warning_id)]
        # "1" with nothing open (confirmed before, by any means) still counts as confirmed
        outcome = (lambda n: "confirmed" if n else "repeated") if pressed_1 else (lambda n: "ignored")
        changed = await self.store.answer(Inbound(self.clock.now(), "voice", from_number, digits, person,
                                                  delivery_id, call_ref), ids, outcome)
        if changed is None:
            return None
        return pressed_1 and (changed > 0 or not ids)

    async def link_confirm(self, warning_id: int, person_id: str) -> int:
        """A click on a signed confirmation link: confirms that person's open requirements of the warning.

        Audited with the person as the actor: the link is signed for them alone, so unlike an
        SMS from a shared number it says who answered. Returns how many requirements it
        confirmed (0 when already confirmed or nothing was open)."""
        ids = [i.confirmation_id for i in await self.store.open_items([person_id], warning_id)]
        return await self.store.answer(Inbound(self.clock.now(), "link", person_id, "", person_id), ids,
                                       lambda n: "confirmed" if n else "repeated", actor=person_id,
                                       action="confirmation.link")

    async def operator_confirm(self, confirmation_id: int, person_id: str | None, operator: str,
                               reason: str) -> int:
        """An operator records a confirmation given by phone on someone's behalf (audited)."""
        return await self.store.answer(Inbound(self.clock.now(), "operator", operator, reason, person_id),
                                       [confirmation_id], lambda n: "confirmed" if n else "repeated",
                                       confirmed_by=person_id or operator, reason=reason, actor=operator)
