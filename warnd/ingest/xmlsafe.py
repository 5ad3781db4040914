"""Safe parsing of untrusted XML bytes.

Defence in layers: a size limit before anything is read; any DOCTYPE refused
(a DTD is how entity bombs and XXE get in, and CAP never needs one); and a
parser that would neither expand entities nor load DTDs nor touch the network
even if a DOCTYPE slipped past the first check.
"""
from __future__ import annotations

import re

from lxml import etree

from warnd.domain.errors import error
from warnd.domain.model import ValidationNote

DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
_XML_DECL = re.compile(r"^(<\?xml[^>]*?encoding\s*=\s*)(['\"])[^'\"]*\2")


def safe_parser() -> etree.XMLParser:
    """A fresh parser (lxml parsers are not safe to share between threads)."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           huge_tree=False, dtd_validation=False, attribute_defaults=False)


def parse_xml(body: bytes, max_bytes: int) -> etree._Element:
    """Parse bytes into an element tree or raise a `cap.*` WarndError."""
    if len(body) > max_bytes:
        raise error("cap.too_large", "body", f"{len(body)} bytes; the limit is {max_bytes}",
                    f"消息 {len(body)} 字节，超过上限 {max_bytes} 字节")
    _refuse_doctype(prolog_doctype(body))
    try:
        root = etree.fromstring(body, safe_parser())
    except etree.XMLSyntaxError as exc:
        line, column = exc.position
        reason = (exc.msg or "not well-formed").split(", line ")[0]
        raise error("cap.not_xml", "body", f"line {line}, column {column}: {reason}",
                    f"第 {line} 行第 {column} 列：{reason}") from None
    # The prolog scan misses DOCTYPEs in non-ASCII-compatible encodings (UTF-16).
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        _refuse_doctype(root_name(root))
    return root


def prolog_doctype(body: bytes) -> str | None:
    """The root name a DOCTYPE in the prolog declares, or None if there is none.

    Works on the raw bytes so that a DOCTYPE is refused even when the rest of
    the document is malformed, and before the parser sees any of it.
    """
    pos = 3 if body.startswith(b"\xef\xbb\xbf") else 0
    while pos < len(body):
        while pos < len(body) and body[pos] in b" \t\r\n":
            pos += 1
        rest = body[pos:pos + 9]
        if rest.startswith(b"<?"):
            pos = _after(body, b"?>", pos)
        elif rest.startswith(b"<!--"):
            pos = _after(body, b"-->", pos)
        elif rest.upper() == b"<!DOCTYPE":
            name = re.match(rb"\s*([^\s\[>]*)", body[pos + 9:pos + 200])
            return name.group(1).decode("ascii", "replace") if name else ""
        else:
            return None
    return None


def _after(body: bytes, end: bytes, pos: int) -> int:
    found = body.find(end, pos)
    return len(body) if found < 0 else found + len(end)


def _refuse_doctype(name: str | None) -> None:
    if name is None:
        return
    if name.lower() == "html":  # e.g. a web server's error page saved as a .cap file
        raise error("cap.unsupported_version", "/html", "an HTML page, not a CAP alert",
                    "这是一个 HTML 网页，不是 CAP 预警消息")
    raise error("cap.forbidden_construct", "<!DOCTYPE>",
                "DOCTYPE declarations are refused (CAP needs no DTD; entities are not expanded)",
                "拒绝 DOCTYPE 声明（CAP 不需要 DTD，不展开任何实体）")


def root_name(root: etree._Element) -> str:
    return etree.QName(root).localname


def strip_signatures(root: etree._Element) -> tuple[ValidationNote, ...]:
    """Remove XML-DSig <Signature> elements so the CAP schema sees only CAP.

    Verifying signatures is a separate concern; the note says it was not done.
    """
    # A <Signature> root is no CAP alert; the schema check refuses it, so it stays.
    found = [sig for sig in root.iter(f"{{{DSIG_NS}}}Signature") if sig.getparent() is not None]
    for sig in found:
        sig.getparent().remove(sig)
    if not found:
        return ()
    return (ValidationNote("cap.signature_ignored", f"/{root_name(root)}/Signature",
                           f"{len(found)} XML signature(s) present; not verified",
                           f"含 {len(found)} 个 XML 签名，未验证"),)


def decode_document(body: bytes, root: etree._Element) -> str:
    """The document as received, as str; its declaration then says UTF-8.

    So `text.encode("utf-8")` is again the same document, whatever the
    original encoding (a corpus file is ISO-8859-1).
    """
    encoding = root.getroottree().docinfo.encoding or "utf-8"
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8-sig"  # drops a byte-order mark
    try:
        text = body.decode(encoding).lstrip("\ufeff")
    except (LookupError, UnicodeDecodeError):
        # An encoding libxml2 reads and Python does not (EUC-TW), or reads otherwise:
        # libxml2's reading of the bytes as received, written out again.
        tree = etree.fromstring(body, safe_parser()).getroottree()
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(tree, encoding="unicode")
    return _XML_DECL.sub(r'\1"UTF-8"', text, count=1)
