"""A session's report and its export files: shared by the API and the CLI."""

from __future__ import annotations

from server.attendance.ledger import Ledger, Row
from server.attendance.report import SessionReport, build_report, to_csv, to_json, to_xlsx
from server.attendance.signing import Checkpoint
from server.store import Session, Store

CONTENT_TYPES = {
    "csv": "text/csv",
    "json": "application/json",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def report_for(store: Store, ledger: Ledger, session: Session) -> tuple[SessionReport, list[Row]]:
    rows = list(ledger.rows(session.id))
    names = {m.member_id: (m.name, m.township, m.phone) for m in store.members()}
    rooms = {r.code: r.name for r in session.rooms}
    report = build_report(
        session.id,
        rows,
        store.credit_threshold(session.id),
        names,
        rooms,
        replay_credit=store.replay_credit(session.id),
    )
    return report, rows


def render(
    fmt: str,
    report: SessionReport,
    rows: list[Row],
    checkpoints: list[Checkpoint],
    receipt: dict | None,
    phones: bool,
) -> bytes:
    if fmt == "csv":
        return to_csv(report, receipt, phones)
    if fmt == "xlsx":
        return to_xlsx(report, receipt, phones)
    return to_json(report, rows, [c.as_json() for c in checkpoints], receipt, phones)
