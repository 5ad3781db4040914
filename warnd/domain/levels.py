"""Which Chinese warning level (red…blue) an alert has.

An issuer may state the level explicitly as an info parameter; otherwise the
CAP severity decides, and `Unknown` maps to a configured level. Only the two
names below count as explicit: other producers' colour parameters (Taiwan's
`alert_color`, MeteoAlarm's `awareness_level`) use their own vocabularies.
"""
from __future__ import annotations

from warnd.config import Config
from warnd.domain.model import SEVERITY_LEVELS, Alert, Level

LEVEL_PARAMETERS = ("warnd:level", "预警级别")


def explicit_level(alert: Alert) -> Level | None:
    """The highest level stated by a level parameter, if any parses."""
    found = []
    for info in alert.infos:
        for name, value in info.parameters:
            if name in LEVEL_PARAMETERS:
                try:
                    found.append(Level.parse(value))
                except ValueError:
                    continue  # ingestion rejects these; never guess here
    return max(found, default=None)


def level_of(alert: Alert, config: Config) -> Level:
    """Explicit level wins; else the highest severity; no info at all is blue."""
    explicit = explicit_level(alert)
    if explicit is not None:
        return explicit
    if not alert.infos:
        return Level.BLUE
    unknown = Level.parse(config.unknown_severity_level)
    return max(SEVERITY_LEVELS.get(info.severity, unknown) for info in alert.infos)
