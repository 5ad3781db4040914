"""Atom and RSS CAP indexes → the CAP each entry carries or links to (pure).

An index is untrusted XML from the network: it is parsed exactly as a CAP
message is (warnd/ingest/xmlsafe.py: size limit first, any DOCTYPE refused, no
entities, no DTD, no network). An entry carries CAP in one of two ways:

- embedded: a CAP 1.2 or 1.1 `<alert>` inside the entry (Atom `<content>`, or
  anywhere in an RSS `<item>`), used as it is, without a fetch;
- linked: an Atom `<link type="application/cap+xml">` (with `untyped_links`,
  also an untyped alternate link, as NWS indexes have), an RSS `<enclosure
  type="application/cap+xml">`, else the RSS item's `<link>`.

Entries with neither are reported as `skipped` (an index may list other
things). A CAP `<alert>` outside any entry is foreign markup and is ignored.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import urljoin

from lxml import etree

from warnd.domain.errors import WarndError, error
from warnd.ingest import xmlsafe
from warnd.ingest.capxml import CAP_VERSIONS

ATOM_NS = "http://www.w3.org/2005/Atom"
CAP_TYPE = "application/cap+xml"
_ATOM = "{%s}" % ATOM_NS


@dataclass(frozen=True)
class Entry:
    ref: str  # the entry's id (Atom id, RSS guid), else its link or title: for people
    key: str  # what makes it the same entry on the next poll (SHA-256 hex)
    link: str | None  # where its CAP is fetched (absolute)
    embedded: bytes | None  # its CAP as a standalone UTF-8 document, when it carries one

    @property
    def has_cap(self) -> bool:
        return self.link is not None or self.embedded is not None


@dataclass(frozen=True)
class Index:
    kind: str  # "atom" or "rss"
    entries: tuple[Entry, ...]  # those that carry or link CAP, in document order
    skipped: tuple[str, ...]  # refs of entries with no CAP in them


def parse_index(body: bytes, max_bytes: int, *, base_url: str = "", untyped_links: bool = False) -> Index:
    """Read an index; raise `feed.too_large` or `feed.not_index`."""
    try:
        root = xmlsafe.parse_xml(body, max_bytes)
    except WarndError as exc:
        if exc.code == "cap.too_large":
            raise WarndError("feed.too_large", exc.problems) from None
        raise WarndError("feed.not_index", exc.problems) from None
    if root.tag == _ATOM + "feed":
        entries = [_atom_entry(e, base_url, untyped_links) for e in root.iterchildren(_ATOM + "entry")]
        kind = "atom"
    elif root.tag == "rss":
        entries = [_rss_item(i, base_url) for i in root.iterfind("channel/item")]
        kind = "rss"
    else:
        name = etree.QName(root)
        raise error("feed.not_index", f"/{name.localname}",
                    f"the root element {name.localname} ({name.namespace or 'no namespace'}) is not an Atom "
                    "feed or an RSS channel", f"根元素 {name.localname} 不是 Atom 或 RSS 订阅源")
    return Index(kind, tuple(e for e in entries if e.has_cap), tuple(e.ref for e in entries if not e.has_cap))


def _atom_entry(entry: etree._Element, base_url: str, untyped_links: bool) -> Entry:
    links = [link for link in entry.iterchildren(_ATOM + "link") if link.get("href")]
    cap = [link for link in links if _media_type(link.get("type")) == CAP_TYPE]
    if not cap and untyped_links:
        cap = [link for link in links if not link.get("type") and link.get("rel", "alternate") == "alternate"]
    href = _absolute(base_url, cap[0].get("href")) if cap else None
    return _entry(entry, _child_text(entry, _ATOM + "id"), _child_text(entry, _ATOM + "updated"),
                  _child_text(entry, _ATOM + "title"), href)


def _rss_item(item: etree._Element, base_url: str) -> Entry:
    enclosures = [e.get("url") for e in item.iterchildren("enclosure")
                  if e.get("url") and _media_type(e.get("type")) == CAP_TYPE]
    atom_links = [link.get("href") for link in item.iterchildren(_ATOM + "link")
                  if link.get("href") and _media_type(link.get("type")) == CAP_TYPE]
    href = next(iter(enclosures + atom_links), None) or _child_text(item, "link")
    return _entry(item, _child_text(item, "guid"), _child_text(item, "pubDate"), _child_text(item, "title"),
                  _absolute(base_url, href) if href else None)


def _entry(el: etree._Element, ident: str | None, updated: str | None, title: str | None,
           link: str | None) -> Entry:
    embedded = _embedded_alert(el)
    ref = (ident or link or title or "(an entry without id, link or title)")[:500]
    digest = hashlib.sha256()
    for part in (ident or "", updated or "", link or ""):
        digest.update(part.encode("utf-8", "replace") + b"\n")
    if embedded is not None:
        digest.update(hashlib.sha256(embedded).digest())
    return Entry(ref, digest.hexdigest(), link, embedded)


def _embedded_alert(el: etree._Element) -> bytes | None:
    """The first CAP <alert> inside the entry, as a document of its own (namespaces kept)."""
    for ns in CAP_VERSIONS:
        found = next(el.iter("{%s}alert" % ns), None)
        if found is not None:
            return etree.tostring(found, encoding="UTF-8", xml_declaration=True, with_tail=False)
    return None


def _child_text(el: etree._Element, tag: str) -> str | None:
    child = el.find(tag)
    if child is None:
        return None
    return "".join(child.itertext()).strip() or None


def _media_type(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


def _absolute(base_url: str, href: str) -> str:
    return urljoin(base_url, href.strip()) if base_url else href.strip()
