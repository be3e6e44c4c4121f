"""A monthly statement as a PDF (reportlab platypus): summary, positions, trades, cash movements.

Pure rendering: figures come in as ``StatementData`` (analytics.statements) and bytes go out, so
it runs outside any database transaction. Long tables continue over pages with their header row
repeated.
"""

from __future__ import annotations

import io
from html import escape
from typing import Any

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from analytics.statements import PositionLine, StatementData
from trading.units import cents_to_str, qty_to_str, units_to_str

_TABLE_STYLE = TableStyle(
    [
        ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
        ("FONTSIZE", (0, 0), (-1, -1), 8),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8edf3")),
        ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.grey),
        ("ALIGN", (1, 1), (-1, -1), "RIGHT"),
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f7f7f7")]),
    ]
)


def _money(cents: int) -> str:
    return f"${cents_to_str(cents)}"


def _table(header: list[str], rows: list[list[Any]], empty: str) -> Table:
    body = rows or [[empty] + [""] * (len(header) - 1)]
    table = Table([header, *body], repeatRows=1, hAlign="LEFT")
    table.setStyle(_TABLE_STYLE)
    return table


def _positions(lines: list[PositionLine]) -> Table:
    return _table(
        ["Symbol", "Quantity", "Price", "Market value"],
        [
            [line.symbol, qty_to_str(line.qty), units_to_str(line.price_units), _money(line.value_cents)]
            for line in lines
        ],
        "No positions",
    )


def statement_pdf_render(*, data: StatementData) -> bytes:
    styles = getSampleStyleSheet()
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=landscape(A4),
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=15 * mm,
        title=f"Statement {data.period} {data.account_number}",
        author="Market simulator",
    )
    zone = data.start.tzinfo
    summary = [
        ["Opening cash", _money(data.opening_cash_cents)],
        ["Deposits, grants and resets", _money(data.external_flows_cents)],
        ["Net cash from trades", _money(data.trade_cash_cents)],
        ["Commissions", _money(-data.commissions_cents)],
        ["Closing cash", _money(data.closing_cash_cents)],
        ["Opening equity", _money(data.opening_equity_cents)],
        ["Closing equity", _money(data.closing_equity_cents)],
        ["Realized profit and loss", _money(data.realized_pl_cents)],
        ["Profit and loss (equity change without deposits)", _money(data.profit_loss_cents)],
        ["Trades", str(len(data.trades))],
    ]
    summary_table = Table(summary, hAlign="LEFT")
    summary_table.setStyle(
        TableStyle([("FONTSIZE", (0, 0), (-1, -1), 9), ("ALIGN", (1, 0), (1, -1), "RIGHT")])
    )
    story = [
        Paragraph(f"Account statement {data.period}", styles["Title"]),
        Paragraph(
            f"Account {data.account_number} ({escape(data.owner)}) &middot; "
            f"{data.start:%Y-%m-%d %H:%M} to {data.end:%Y-%m-%d %H:%M} {zone} &middot; "
            f"generated {data.generated_at:%Y-%m-%d %H:%M} UTC",
            styles["Normal"],
        ),
        Spacer(1, 6 * mm),
        Paragraph("Summary", styles["Heading2"]),
        summary_table,
        Paragraph("Positions at period end", styles["Heading2"]),
        _positions(data.closing_positions),
        Paragraph("Trades", styles["Heading2"]),
        _table(
            ["Time", "Symbol", "Side", "Quantity", "Price", "Value", "Commission", "Realized P&L"],
            [
                [
                    f"{trade.filled_at.astimezone(zone):%Y-%m-%d %H:%M:%S}",
                    trade.symbol,
                    trade.side,
                    qty_to_str(trade.qty),
                    units_to_str(trade.price_units),
                    _money(trade.value_cents),
                    _money(trade.commission_cents),
                    _money(trade.realized_pl_cents),
                ]
                for trade in data.trades
            ],
            "No trades in this period",
        ),
        Paragraph("Cash movements (other than trades)", styles["Heading2"]),
        _table(
            ["Time", "Kind", "Memo", "Amount"],
            [
                [
                    f"{line.created_at.astimezone(zone):%Y-%m-%d %H:%M:%S}",
                    line.kind,
                    line.memo[:80],
                    _money(line.amount_cents),
                ]
                for line in data.cash_movements
            ],
            "No cash movements in this period",
        ),
        Paragraph("Positions at period start", styles["Heading2"]),
        _positions(data.opening_positions),
    ]
    document.build(story)
    return buffer.getvalue()
