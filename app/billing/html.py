"""An invoice as a self-contained, printable HTML page.

Plain f-strings: every value that comes from a person (names, emails, descriptions, memo, the
issuer setting) goes through ``html.escape``; the page loads nothing (inline CSS, no scripts),
so it can be served with a ``default-src 'none'`` Content-Security-Policy.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from app.models import Invoice, InvoiceLine, InvoiceStatus

# ISO 4217 currencies whose minor unit is not the hundredth (Stripe's lists).
ZERO_DECIMAL = frozenset(
    {
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    }
)
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
SYMBOLS = {
    "usd": "$",
    "eur": "€",
    "gbp": "£",
    "jpy": "¥",
    "inr": "₹",
    "krw": "₩",
    "cad": "CA$",
    "aud": "A$",
    "nzd": "NZ$",
}


def minor_unit_digits(currency: str) -> int:
    code = currency.lower()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def format_money(amount_minor: int, currency: str) -> str:
    """``1900, "usd"`` -> ``$19.00``; ``550, "eur"`` -> ``€5.50``; ``500, "jpy"`` -> ``¥500``;
    currencies without a well-known symbol: ``CHF 1,234.50``."""
    digits = minor_unit_digits(currency)
    sign = "-" if amount_minor < 0 else ""
    major, minor = divmod(abs(amount_minor), 10**digits)
    number = f"{major:,}" + (f".{minor:0{digits}d}" if digits else "")
    symbol = SYMBOLS.get(currency.lower())
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{currency.upper()} {number}"


def format_rate(rate_bps: int) -> str:
    """Basis points as a percentage: 2000 -> ``20%``, 825 -> ``8.25%``, 1250 -> ``12.5%``."""
    whole, fraction = divmod(rate_bps, 100)
    return f"{whole}" + (f".{fraction:02d}".rstrip("0") if fraction else "") + "%"


def format_date(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%d %B %Y").lstrip("0") if moment else ""


def is_tax_included(invoice: Invoice, lines: Sequence[InvoiceLine]) -> bool:
    """Line prices contain the tax (marketplace purchases): the lines add up to the total, not
    to the subtotal."""
    return invoice.tax_minor > 0 and sum(line.amount_minor for line in lines) == invoice.total_minor


_CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f3f4f6;color:#111827;font:14px/1.5 -apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
.invoice{position:relative;max-width:800px;margin:32px auto;padding:48px;background:#fff;
box-shadow:0 1px 3px rgba(0,0,0,.12);overflow:hidden}
header{display:flex;justify-content:space-between;gap:24px;align-items:flex-start}
h1{margin:0;font-size:28px;letter-spacing:.04em;text-transform:uppercase}
h2{margin:0 0 4px;font-size:12px;color:#6b7280;text-transform:uppercase;letter-spacing:.06em}
.muted{color:#6b7280}
.number{font-size:16px;font-weight:600;text-align:right}
.parties{display:flex;justify-content:space-between;gap:24px;margin:32px 0}
dl{display:grid;grid-template-columns:auto auto;gap:2px 16px;margin:0}
dt{color:#6b7280}dd{margin:0;text-align:right}
table{width:100%;border-collapse:collapse;margin-top:8px}
th{text-align:left;font-size:12px;color:#6b7280;text-transform:uppercase;letter-spacing:.04em;
border-bottom:2px solid #111827;padding:8px 6px}
td{padding:8px 6px;border-bottom:1px solid #e5e7eb;vertical-align:top}
.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
tfoot td{border-bottom:none;padding:4px 6px}
tfoot tr.total td{border-top:2px solid #111827;font-weight:700;font-size:16px;padding-top:8px}
.memo{margin-top:24px;padding:12px 16px;background:#f9fafb;border-left:3px solid #d1d5db;
white-space:pre-wrap}
footer{margin-top:40px;font-size:12px;color:#6b7280}
.stamp{position:absolute;top:150px;right:40px;transform:rotate(-14deg);padding:6px 18px;
border:4px solid currentColor;border-radius:6px;font-size:36px;font-weight:800;
letter-spacing:.12em;opacity:.75}
.stamp.paid{color:#15803d}.stamp.void{color:#b91c1c}
@page{size:A4;margin:16mm}
@media print{body{background:#fff}.invoice{margin:0;max-width:none;padding:0;box-shadow:none}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
"""


def render_invoice_html(invoice: Invoice, lines: Sequence[InvoiceLine], *, issuer: str) -> str:
    def money(amount_minor: int) -> str:
        return escape(format_money(amount_minor, invoice.currency))

    number = escape(invoice.number or "Draft")
    heading = "Credit note" if invoice.kind == "credit_note" else "Invoice"
    seller_name, _, seller_address = issuer.partition(", ")
    tax_included = is_tax_included(invoice, lines)
    rows = "".join(
        f"<tr><td>{escape(line.description)}</td>"
        f'<td class="num">{line.quantity}</td>'
        f'<td class="num">{money(line.unit_amount_minor)}</td>'
        f'<td class="num">{money(line.amount_minor)}</td></tr>'
        for line in lines
    )
    tax_label = f"Tax ({format_rate(invoice.tax_rate_bps)}{', included' if tax_included else ''})"
    totals = (
        f'<tr><td colspan="3" class="num">Subtotal{" (excl. tax)" if tax_included else ""}</td>'
        f'<td class="num">{money(invoice.subtotal_minor)}</td></tr>'
        f'<tr><td colspan="3" class="num">{escape(tax_label)}</td>'
        f'<td class="num">{money(invoice.tax_minor)}</td></tr>'
        f'<tr class="total"><td colspan="3" class="num">Total {escape(invoice.currency.upper())}</td>'
        f'<td class="num">{money(invoice.total_minor)}</td></tr>'
    )
    if invoice.status == InvoiceStatus.OPEN:
        totals += (
            '<tr><td colspan="3" class="num">Amount due</td>'
            f'<td class="num">{money(invoice.total_minor)}</td></tr>'
        )
    stamp = ""
    if invoice.status in (InvoiceStatus.PAID, InvoiceStatus.VOID):
        stamp = f'<div class="stamp {escape(invoice.status)}">{escape(invoice.status.upper())}</div>'
    dates = [("Issued", format_date(invoice.issued_at)), ("Due", format_date(invoice.due_at))]
    if invoice.status == InvoiceStatus.PAID:
        dates.append(("Paid", format_date(invoice.paid_at)))
    elif invoice.status == InvoiceStatus.VOID:
        dates.append(("Voided", format_date(invoice.voided_at)))
    dates.append(("Status", invoice.status.upper()))
    date_list = "".join(f"<dt>{escape(label)}</dt><dd>{escape(value)}</dd>" for label, value in dates)
    memo = f'<div class="memo">{escape(invoice.memo)}</div>' if invoice.memo else ""
    notes = ["Prices include tax." if tax_included else "", f"Amounts in {invoice.currency.upper()}."]
    if invoice.reference:
        notes.append(f"Reference: {invoice.kind} {invoice.reference}.")
    footer = " ".join(escape(note) for note in notes if note)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{heading} {number}</title>
<style>{_CSS}</style>
</head>
<body>
<main class="invoice">
{stamp}
<header>
<div class="seller"><strong>{escape(seller_name)}</strong><br>
<span class="muted">{escape(seller_address)}</span></div>
<div><h1>{heading}</h1><div class="number">{number}</div></div>
</header>
<section class="parties">
<div class="buyer"><h2>Bill to</h2><div>{escape(invoice.customer_name)}</div>
<div class="muted">{escape(invoice.customer_email)}</div></div>
<dl>{date_list}</dl>
</section>
<table>
<thead><tr><th>Description</th><th class="num">Qty</th><th class="num">Unit price</th>
<th class="num">Amount</th></tr></thead>
<tbody>{rows}</tbody>
<tfoot>{totals}</tfoot>
</table>
{memo}
<footer>{footer}</footer>
</main>
</body>
</html>
"""
