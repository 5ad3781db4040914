"""The channel contract holds: outside `channels/` and the configuration nothing knows a
channel by its name, the domain does not import the channels, and every channel declares
what the rest of warnd reads (its spec)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from warnd.config import ChannelConfig, Config
from warnd.domain.sending import Audience, InboundKind
from warnd_channels.registry import SPECS, build_channels

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ("warnd/engine", "warnd/store", "warnd/http", "warnd/domain")
# The directory's loudspeakers are an entity kind of their own (a table, an import section),
# spelled like the channel that reaches them: these literals name the entity, not the channel.
ENTITY_WORDS = {("warnd/store/directory.py", "speaker"), ("warnd/http/directory_api.py", "speaker"),
                ("warnd/domain/sending.py", "speaker")}


def _literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def _sources() -> list[Path]:
    return sorted(p for folder in CHECKED for p in (ROOT / folder).rglob("*.py"))


def test_no_channel_is_named_in_engine_store_http_or_domain():
    names = set(SPECS)
    found = [f"{p.relative_to(ROOT)}:{line}: {value!r}" for p in _sources() for line, value in _literals(p)
             if value in names and (str(p.relative_to(ROOT)), value) not in ENTITY_WORDS]
    assert not found, "channel names outside channels/ and configuration:\n" + "\n".join(found)


def test_the_name_check_finds_a_name(tmp_path):
    """The scan above is not blind: a literal channel name is found."""
    sample = tmp_path / "sample.py"
    sample.write_text('"""Docstrings may say sms."""\nif channel == "sms":\n    pass\n', encoding="utf-8")
    assert _literals(sample) == [(2, "sms")]


def test_the_domain_does_not_import_the_channels():
    offenders = []
    for path in sorted((ROOT / "warnd/domain").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [module or ""]
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("warnd_channels")]
    assert not offenders


def test_no_ability_is_guessed_with_getattr_or_hasattr():
    """Abilities are the spec's facts, not attributes probed on a channel object."""
    found = [f"{p.relative_to(ROOT)}:{n.lineno}" for p in _sources() if "engine" in p.parts
             for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("getattr", "hasattr")
             and n.args and isinstance(n.args[0], ast.Subscript | ast.Name)
             and "channel" in ast.unparse(n.args[0]).lower()]
    assert not found


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_spec_declares_what_warnd_reads(name):
    spec = SPECS[name]
    assert spec.name == name and isinstance(spec.audience, Audience)
    assert spec.address in ("phone", "url", "device", "group")
    assert issubclass(spec.config_model, ChannelConfig)
    assert spec.config_model().public == spec.public  # the section's default says what the spec says
    for kind, inbound in spec.inbound.items():
        assert kind.isidentifier() and isinstance(inbound.kind, InboundKind) and callable(inbound.handle)
    if spec.takes(InboundKind.RECEIPTS) and spec.callbacks:
        assert not spec.dedupes or spec.audience is not Audience.PERSON


def test_only_enabled_channels_are_built_and_a_section_is_validated_by_its_channel():
    assert set(build_channels(Config())) == {name for name in SPECS if Config().channel(name).enabled
                                              and not SPECS[name].callbacks}
    assert all(isinstance(Config().channel(name), SPECS[name].config_model) for name in SPECS)
