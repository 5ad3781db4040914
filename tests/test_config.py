"""The documented example configuration is the real default, and bad settings are named."""
from __future__ import annotations

from pathlib import Path

import pytest

from warnd.config import Config, load_config
from warnd.domain.errors import WarndError

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "warnd.example.yaml"


def test_the_example_file_documents_the_defaults():
    assert load_config(EXAMPLE) == Config()


def test_environment_overrides_the_database(monkeypatch):
    monkeypatch.setenv("WARND_DATABASE_URL", "postgresql://warnd@db/warnd")
    assert load_config(EXAMPLE).database_url == "postgresql://warnd@db/warnd"


def test_unknown_keys_and_levels_are_rejected_by_name(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("webhok: {}\nrouting:\n  - channels: [webhook]\n    levels: [purple]\n")
    with pytest.raises(WarndError) as err:
        load_config(bad)
    fields = {p.field for p in err.value.problems}
    assert "webhok" in fields and any(f.startswith("routing.0.levels") for f in fields)


def test_an_unknown_display_timezone_is_refused_by_name():
    with pytest.raises(WarndError) as err:
        load_config(None, display_timezone="Mars/Olympus")
    assert [p.field for p in err.value.problems] == ["display_timezone"]
    assert "Mars/Olympus" in err.value.problems[0].detail_en


def test_the_compose_example_configuration_is_valid():
    config = load_config(EXAMPLE.parents[1] / "deploy" / "warnd.yaml")
    # no channel with placeholder credentials: SMS and calls come on with real ones, from the environment
    assert config.speaker.enabled and not config.sms.enabled and not config.voice.enabled
    assert config.mqtt.url == "mqtt://mosquitto:1883"  # its credentials come from WARND_MQTT__URL


def test_a_partial_channel_override_keeps_that_channels_other_defaults():
    config = load_config(None, voice={"per_number": {"minute": 10}, "retry": {"max_attempts": 6}},
                         sms={"per_number": {"day": None}})
    # a called number still gets at most 10 calls an hour and 30 a day; redials stay a minute apart
    assert (config.voice.per_number.minute, config.voice.per_number.hour, config.voice.per_number.day) == (10, 10, 30)
    assert (config.voice.retry.max_attempts, config.voice.retry.base_seconds) == (6, 60)
    assert (config.sms.per_number.minute, config.sms.per_number.day) == (5, None)  # null lifts a cap
