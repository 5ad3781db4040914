"""The channel contract, as channel modules import it.

The types live in the domain (`warnd.domain.sending`), where planning, the engine
and the store read them; this module only gathers them for `channels/`.
"""
from __future__ import annotations

from warnd.domain.sending import (Answered, Audience, CallbackUrl, Channel, ChannelSpec, Inbound, InboundKind,
                                  InboundRequest, InboundResponse, InboundSink, KeyPress, Message, Outcome,
                                  ProviderSend, Receipt, ReceiptState, Recipient, RecipientKind, Rendered, Reply,
                                  SendResult)

__all__ = ["Answered", "Audience", "CallbackUrl", "Channel", "ChannelSpec", "Inbound", "InboundKind",
           "InboundRequest", "InboundResponse", "InboundSink", "KeyPress", "Message", "Outcome", "ProviderSend",
           "Receipt", "ReceiptState", "Recipient", "RecipientKind", "Rendered", "Reply", "SendResult"]
