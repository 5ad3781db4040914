"""Parsed warnings by id, for rendering: each stored CAP text is parsed once per process."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import sqlalchemy as sa

from warnd.config import Config
from warnd.domain.model import Alert
from warnd.ingest.validate import parse_warning
from warnd.store.database import Database
from warnd.store.schema import warnings


@dataclass(frozen=True)
class CachedAlert:
    alert: Alert
    cap_xml: str


class AlertCache:
    def __init__(self, db: Database, config: Config, size: int = 256) -> None:
        self.db = db
        self.config = config
        self.size = size
        self._items: OrderedDict[int, CachedAlert] = OrderedDict()

    async def get(self, warning_id: int) -> CachedAlert:
        hit = self._items.get(warning_id)
        if hit is not None:
            self._items.move_to_end(warning_id)
            return hit
        async with self.db.read() as conn:
            cap_xml = (await conn.execute(sa.select(warnings.c.cap_xml)
                                          .where(warnings.c.id == warning_id))).scalar_one()
        parsed = parse_warning(cap_xml.encode("utf-8"), "application/cap+xml", self.config)
        item = CachedAlert(parsed.alert, cap_xml)
        self._items[warning_id] = item
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return item

    def put(self, warning_id: int, alert: Alert, cap_xml: str) -> None:
        """Seed the cache at ingest time, so the first send needs no re-parse."""
        self._items[warning_id] = CachedAlert(alert, cap_xml)
