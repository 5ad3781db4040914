"""XML signatures of CAP from a feed marked `signed` (signxml against trusted certificates).

A CAP message from a signed feed must carry an enveloped XML-DSig signature made
with the key of one of the feed's `trusted_certs`; the certificate a message
carries in its own KeyInfo proves nothing and is not trusted. What is ingested
is what the signature covers (signxml's `signed_xml`), not the document around it,
so nothing can be slipped in beside a valid signature.
"""
from __future__ import annotations

from pathlib import Path

from cryptography import x509
from lxml import etree
from signxml import XMLVerifier
from signxml.exceptions import InvalidInput, SignXMLException

from warnd.domain.errors import error
from warnd.ingest import xmlsafe


def load_certificates(paths: list[str]) -> tuple[x509.Certificate, ...]:
    """Every certificate in the PEM files (checked at configuration load)."""
    return tuple(cert for path in paths for cert in x509.load_pem_x509_certificates(Path(path).read_bytes()))


def verified(document: bytes, trusted: tuple[x509.Certificate, ...], max_bytes: int) -> bytes:
    """The signed CAP document, if one trusted certificate verifies its signature; else `feed.bad_signature`."""
    root = xmlsafe.parse_xml(document, max_bytes)  # size and DOCTYPE first, as for any CAP
    if next(root.iter(f"{{{xmlsafe.DSIG_NS}}}Signature"), None) is None:
        raise error("feed.bad_signature", "/alert/Signature", "the feed is signed, this message is not",
                    "该订阅源要求签名，此消息没有签名")
    reasons = []
    for cert in trusted:
        try:
            result = XMLVerifier().verify(document, x509_cert=cert, parser=xmlsafe.safe_parser())
        except (SignXMLException, InvalidInput, ValueError, etree.LxmlError) as exc:
            reasons.append(str(exc) or type(exc).__name__)
            continue
        signed = result.signed_xml
        if signed is None or etree.QName(signed).localname != "alert":
            reasons.append("the signature does not cover the alert")
            continue
        return etree.tostring(signed, encoding="UTF-8", xml_declaration=True)
    detail = "; ".join(dict.fromkeys(reasons))[:300] or "no trusted certificate"
    raise error("feed.bad_signature", "/alert/Signature", f"no trusted certificate verifies it: {detail}",
                f"没有受信任的证书能验证该签名：{detail}")
