"""Small builders for domain objects, so tests say only what matters to them."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from warnd.domain.directory import Person, Region, Subscriber
from warnd.domain.model import Alert, Area, Info, MsgType, Reference, Status

T0 = datetime(2026, 7, 1, 0, 0, tzinfo=timezone.utc)
COUNTY = "421126"
TOWNSHIP = "421126100"
VILLAGE = "421126100201"
GRIDS = (VILLAGE + "001", VILLAGE + "002")


def alert(identifier: str = "W1", *, severity: str = "Extreme", status: Status = Status.ACTUAL,
          msg_type: MsgType = MsgType.ALERT, codes: tuple[str, ...] = (VILLAGE,), event: str = "暴雨",
          expires: datetime | None = T0 + timedelta(hours=6), references: tuple[Reference, ...] = (),
          sent: datetime = T0, language: str = "zh-CN") -> Alert:
    area = Area("测试区域", geocodes=tuple(("GB2260", c) for c in codes))
    info = Info(language, ("Met",), event, "Immediate", severity, "Likely", expires=expires,
                headline=f"{event}预警", description="预计未来3小时有强降雨", instruction="转移到安全地带",
                sender_name="县气象局", areas=(area,))
    return Alert(identifier, "dept@example.cn", sent, status, msg_type, "Public", references=references,
                 infos=(info,))


def regions() -> dict[str, Region]:
    return {
        VILLAGE: Region(VILLAGE, "河口村", "village", TOWNSHIP),
        GRIDS[0]: Region(GRIDS[0], "一组", "grid", VILLAGE),
        GRIDS[1]: Region(GRIDS[1], "二组", "grid", VILLAGE),
    }


def people() -> tuple[Person, ...]:
    return (
        Person("p1", "张三", GRIDS[0], ("grid_responsible",), "+8613800000001", backup="p2"),
        Person("p2", "李四", GRIDS[0], ("liaison",), "+8613800000002"),
        Person("p3", "王五", GRIDS[1], ("grid_responsible",), "+8613800000003"),
        Person("p9", "赵六", TOWNSHIP, ("township_duty",), "+8613800000009"),
    )


def subscriber(sid: str = "tv", **kw) -> Subscriber:
    return Subscriber(sid, kw.pop("url", f"http://127.0.0.1:9/{sid}"), kw.pop("secret", "whsec_" + "A" * 32), **kw)

# Tests about something other than approval publish at once (approval has its own tests).
NO_APPROVAL = {"levels": {"red": 0, "orange": 0, "yellow": 0, "blue": 0}}
SENDER = "dept@example.cn"  # the sender of alert()
