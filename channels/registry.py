"""The enabled channels, built from configuration.

Adding a channel is one line in `_FACTORIES` (plus its module, templates and
conformance test). A channel is built only when its config section is enabled.
"""
from __future__ import annotations

from collections.abc import Callable

from warnd.config import Config

from .base import Channel
from .sms import SmsChannel
from .speaker import SpeakerChannel
from .twilio_common import CallbackUrl
from .voice import VoiceChannel
from .webhook import WebhookChannel

_FACTORIES: dict[str, Callable[[Config], Channel]] = {
    "webhook": lambda config: WebhookChannel(config.webhook),
    # A stable client id: a restarted node resumes its persistent session instead of
    # leaving a dead one in the shared ack group to swallow half of the acks.
    "speaker": lambda config: SpeakerChannel(
        config.mqtt if config.mqtt.client_id
        else config.mqtt.model_copy(update={"client_id": f"warnd-{config.node_name}"}), config.speaker),
}
_CALLBACK_FACTORIES: dict[str, Callable[[Config, CallbackUrl], Channel]] = {  # need provider callbacks
    "sms": lambda config, url: SmsChannel(config.twilio, config.sms, url),
    "voice": lambda config, url: VoiceChannel(config.twilio, config.voice, url),
}


def build_channels(config: Config, callback_url: Callable[[str, int], str] | None = None) -> dict[str, Channel]:
    """name → channel, for every enabled channel."""
    channels = {name: make(config) for name, make in _FACTORIES.items()
                if config.channel(name).enabled}
    if callback_url is not None:
        channels.update({name: make(config, callback_url) for name, make in _CALLBACK_FACTORIES.items()
                         if config.channel(name).enabled})
    return channels
