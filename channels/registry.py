"""The channels warnd knows, and the enabled ones built from configuration.

Adding a channel is one line in `SPECS` (plus its module with its `SPEC`, its
templates and its conformance test): the engine, store, HTTP layer and planning
read the spec, never the name. A channel is built only when its section is enabled.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from warnd.domain.sending import Audience, Channel, ChannelSpec

from . import aliyun_sms, sms, speaker, voice, webhook, wecom

SPECS: dict[str, ChannelSpec] = {spec.name: spec for spec in (
    webhook.SPEC,
    speaker.SPEC,
    sms.SPEC,
    voice.SPEC,
    aliyun_sms.SPEC,
    wecom.SPEC,
)}

CallbackUrls = Callable[[str, int], str]  # (purpose "<channel>-<kind>", delivery id) → signed URL


def spec(name: str) -> ChannelSpec:
    """The spec of a known channel (KeyError names it otherwise)."""
    return SPECS[name]


def audiences(names: Iterable[str]) -> dict[str, Audience]:
    """name → audience, for the planner."""
    return {name: SPECS[name].audience for name in names}


def build_channels(config, callback_url: CallbackUrls | None = None) -> dict[str, Channel]:  # noqa: ANN001
    """name → channel, for every enabled channel; those whose provider calls back are
    built only when there is somewhere to call (a node, not a tool)."""
    return {name: s.build(config.channel(name), config, callback_url)
            for name, s in SPECS.items()
            if config.channel(name).enabled and (callback_url is not None or not s.callbacks)}
