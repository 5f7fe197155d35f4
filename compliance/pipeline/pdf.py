"""The human-readable certificate (PDF): summary, checks with values and thresholds, digests, QR code.

It shows what the signed statement says and nothing more — keyed hashes, never identifiers. The
signed JSON is the certificate; the PDF points to it (QR code / link) and to the offline check.
"""

from __future__ import annotations

import io
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from ..attestation import NOT_TRAINED, CertificateFacts, json_digest
from .engine import SERVED_UTILITY_CHECKS

_MONO = ParagraphStyle("mono", fontName="Courier", fontSize=7.5, leading=9)
_CELL = ParagraphStyle("cell", fontName="Helvetica", fontSize=8.5, leading=10)  # a wrapping table cell


def _qr(text: str, size: float = 32 * mm) -> Drawing:
    widget = QrCodeWidget(text)
    left, bottom, right, top = widget.getBounds()
    drawing = Drawing(size, size, transform=[size / (right - left), 0, 0, size / (top - bottom), 0, 0])
    drawing.add(widget)
    return drawing


def _value(value: Any) -> str:
    """A check's figure as a person reads it: four significant digits, no negative zero."""
    if isinstance(value, float):
        return f"{value + 0.0:.4g}"  # -0.0 + 0.0 is 0.0
    return "—" if value is None else str(value)


def _table(rows: list[list[Any]], widths: list[float], header: bool = True) -> Table:
    table = Table(rows, colWidths=widths, hAlign="LEFT")
    style = [("FONT", (0, 0), (-1, -1), "Helvetica", 8.5), ("VALIGN", (0, 0), (-1, -1), "TOP"),
             ("GRID", (0, 0), (-1, -1), 0.25, colors.grey), ("BOTTOMPADDING", (0, 0), (-1, -1), 3)]
    if header:
        style += [("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8.5),
                  ("BACKGROUND", (0, 0), (-1, 0), colors.Color(0.92, 0.94, 0.97))]
    table.setStyle(TableStyle(style))
    return table


_STATUS = {"pass": "pass", "fail": "FAIL", "inconclusive": "inconclusive", "not_applicable": "n/a"}


def _status(check: dict[str, Any]) -> str:
    """A summary check without ``status`` (certificates issued before it was recorded)."""
    return {True: "pass", False: "fail"}.get(check.get("passed"), "not_applicable")


def _verification(facts: CertificateFacts) -> str:
    summary = facts.report_summary
    verdict = summary.get("verdict", "pass")
    if not (summary.get("passed") and verdict != "pass"):
        return "PASSED" if summary.get("passed") else "not passed"
    # an exact candidate accepted on a verdict that is not a pass (see VerifyOutcome.accepts)
    undecided = [c for c in summary.get("checks", []) if c.get("status") in ("fail", "inconclusive")]
    reasons = []
    if any(c.get("forget_facts") is not None for c in undecided):
        reasons.append("forgetting holds by construction, so the forgetting checks measured the attacks on a "
                       "model that never saw the data (too few facts to decide, or a false alarm)")
    if any(c.get("name") in SERVED_UTILITY_CHECKS for c in undecided):
        reasons.append("a retraining is a new draw of the training recipe, so its utility is held to the "
                       "lineage's first served model (cumulative utility passed), not to the model it "
                       "replaces")
    return (f"{verdict.upper()}, accepted: the model was retrained without the data; "
            + "; ".join(reasons) + "; integrity checks passed")


def _overrides(overrides: list[dict]) -> str:
    """The verdict-policy fields the institution changed, a laxer one in bold (paragraph markup)."""
    if not overrides:
        return "Every verdict threshold at its calibrated default."
    parts = []
    for override in overrides:
        direction = escape(str(override.get("direction")))
        parts.append(f"{escape(str(override.get('field')))} {escape(_value(override.get('value')))} (default "
                     f"{escape(_value(override.get('default')))}, "
                     + (f"<b>{direction}</b>)" if direction == "laxer" else f"{direction})"))
    return "<b>Thresholds changed from the calibrated defaults</b> (the institution's policy): " \
        + "; ".join(parts) + "."


def certificate_pdf(facts: CertificateFacts, *, key_id: str, verify_url: str) -> bytes:
    """Render the certificate of ``facts`` (signed with ``key_id``) as PDF bytes."""
    styles = getSampleStyleSheet()
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=16 * mm, rightMargin=16 * mm,
                            topMargin=14 * mm, bottomMargin=14 * mm, title="Oblivio unlearning certificate",
                            author="Oblivio", subject=f"forget request {facts.request_id}")
    guarantee = "exact (retrained without the data)" if facts.exact else "approximate (verified by attacks)"
    if facts.method == NOT_TRAINED:
        guarantee = "exact: nothing to unlearn, the served model was never trained on a record in scope"
    summary = [
        ["Request", facts.request_id], ["Institution", facts.institution],
        ["Regulation", facts.regulation.upper()], ["Subject level", facts.level],
        ["Subject (keyed hash)", Paragraph(facts.subject_hash, _MONO)],
        ["Scope", f"{facts.scope_counts.get('forget', 0)} training records "
                  f"{'in scope' if facts.method == NOT_TRAINED else 'forgotten'} "
                  f"(scope digest {facts.scope_digest[:16]}…)"],
        ["Method", Paragraph(f"{facts.method} — {guarantee}", _CELL)],
        ["Verification", Paragraph(_verification(facts), _CELL)],
        *([["Already removed by", Paragraph("; ".join(
            f"the job of certificate {c['certificate_id']} (issued {c['issued_at']})"
            for c in facts.covered_by), _CELL)]] if facts.covered_by else []),
        *[[name.replace("_", " ").capitalize(), value] for name, value in facts.times.items() if value],
    ]
    checks = [["Check", "Value", "Threshold", "Result"]] + [
        [Paragraph(str(check.get("name", "?")), _CELL), _value(check.get("value")),
         _value(check.get("threshold")), _STATUS.get(check.get("status") or _status(check), "?")]
        for check in facts.report_summary.get("checks", [])]
    overrides = facts.report_summary.get("policy_overrides")  # absent: no verdict policy was applied
    digests = [
        ["Model before", Paragraph(facts.before.artifact_digest, _MONO)],
        ["Model after (served)", Paragraph(facts.after.artifact_digest, _MONO)],
        ["Base model", Paragraph(facts.after.base_digest or "—", _MONO)],
        ["Verification report", Paragraph(json_digest(facts.report), _MONO)],
        ["Audit chain head",
         Paragraph(f"#{facts.audit_head.get('seq')} {facts.audit_head.get('hash')}", _MONO)],
        ["Signing key id", Paragraph(key_id, _MONO)],
    ]
    verify = Table([[_qr(verify_url), Paragraph(
        "This page summarises a signed certificate (in-toto statement in a DSSE envelope, Ed25519). "
        "The signed JSON is authoritative. Check it offline with<br/>"
        "<font face='Courier'>oblivio certificate verify certificate.json --public-key key.pem</font>"
        f"<br/>or online: <font face='Courier' size='7'>{verify_url}</font><br/><br/>"
        "Inference-time refusal of prompts about this subject between approval and certification was "
        "suppression, not unlearning.", styles["BodyText"])]], colWidths=[36 * mm, 140 * mm], hAlign="LEFT")
    story = [
        Paragraph("Certificate of machine unlearning", styles["Title"]),
        _table([[k, v] for k, v in summary], [45 * mm, 131 * mm], header=False), Spacer(1, 5 * mm),
        Paragraph("Verification checks", styles["Heading3"]),
        _table(checks, [80 * mm, 30 * mm, 30 * mm, 36 * mm]), Spacer(1, 2 * mm),
        *([Paragraph(_overrides(overrides), _CELL)] if overrides is not None else []), Spacer(1, 5 * mm),
        Paragraph("Digests (SHA-256)", styles["Heading3"]),
        _table(digests, [45 * mm, 131 * mm], header=False), Spacer(1, 6 * mm), verify,
    ]
    doc.build(story)
    return buffer.getvalue()
