"""Jinja2 rendering of per-channel, per-language templates.

Templates live in the `templates/` folder (package `warnd_templates`) as
`<channel>/<name>.<language>.j2`; a language falls back to its prefix
(zh-TW → zh-CN is not assumed), then to zh-CN, then to en.
"""
from __future__ import annotations

from functools import lru_cache

from jinja2 import Environment, PackageLoader, StrictUndefined, TemplateNotFound, select_autoescape

from warnd.domain.model import Alert, Level

FALLBACK_LANGUAGES = ("zh-CN", "en")


@lru_cache(maxsize=1)
def environment() -> Environment:
    # auto_reload off: templates ship with the package, and the per-render file checks
    # cost a tenth of a webhook send.
    return Environment(loader=PackageLoader("warnd_templates", "."), undefined=StrictUndefined, auto_reload=False,
                       autoescape=select_autoescape(["xml.j2", "html.j2"]), trim_blocks=True,
                       lstrip_blocks=True, keep_trailing_newline=False)


def template_for(channel: str, name: str, language: str):  # noqa: ANN201 - jinja2.Template
    """The best template for a language, falling back to zh-CN and en."""
    env = environment()
    candidates = [language, language.split("-")[0], *FALLBACK_LANGUAGES]
    for lang in candidates:
        try:
            return env.get_template(f"{channel}/{name}.{lang}.j2")
        except TemplateNotFound:
            continue
    raise TemplateNotFound(f"{channel}/{name}.*.j2")


def warning_context(alert: Alert, level: Level, language: str) -> dict:
    """The variables every template may use."""
    info = alert.info_for(language)
    return {
        "alert": alert,
        "info": info,
        "level": level,
        "level_zh": level.zh,
        "level_en": level.label,
        "drill": alert.status.is_drill,
        "msg_type": alert.msg_type.value,
        "event": info.event if info else "",
        "headline": (info.headline or info.event) if info else "",
        "description": (info.description or "").strip() if info else "",
        "instruction": (info.instruction or "").strip() if info else "",
        "sender_name": (info.sender_name or alert.sender) if info else alert.sender,
        "areas": [a.area_desc for a in alert.areas],
        "expires": alert.expires,
    }


def render(channel: str, name: str, language: str, context: dict) -> str:
    return template_for(channel, name, language).render(**context).strip()
