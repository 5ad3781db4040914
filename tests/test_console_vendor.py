"""The console's vendored libraries are exactly the recorded npm files, licences included."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import warnd.console

ROOT = Path(warnd.console.__file__).parent
VENDOR = ROOT / "static" / "vendor"


def test_every_vendored_file_matches_its_recorded_hash_and_nothing_else_is_there():
    recorded = json.loads((ROOT / "vendor.json").read_text(encoding="utf-8"))
    for name, package in recorded.items():
        shipped = {p.relative_to(VENDOR / name).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                   for p in (VENDOR / name).rglob("*") if p.is_file()}
        assert shipped == package["files"], name
        assert "LICENSE" in shipped, f"{name} ships without its licence"
