"""A session's report as files: CSV and XLSX (a participant a row), JSON (with every event,
streamed, checkable offline), and what the audit page draws. Shared by the API and the CLI."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Iterator, Sequence

from server.attendance.ledger import Ledger, Row
from server.attendance.report import ParticipantReport, SessionReport
from server.attendance.signing import Checkpoint
from server.roster import mask_phone
from server.tables import csv_bytes, xlsx_bytes

CONTENT_TYPES = {
    "csv": "text/csv",
    "json": "application/json",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


COLUMNS = (
    ("member_id", "党员编号"),
    ("name", "姓名"),
    ("place", "乡镇/教室"),
    ("phone", "手机"),
    ("first_join", "首次进入"),
    ("last_leave", "最后离开"),
    ("seconds_watched", "观看秒数"),
    ("replay_seconds", "回放秒数"),
    ("total_seconds", "合计秒数"),
    ("intervals", "在线时段"),
    ("reconnects", "重连次数"),
    ("rollcalls", "点名应答"),
    ("credited", "计入学时"),
    ("participant", "参与者"),
    ("identified_by", "身份来源"),
    ("unverified_seconds", "未经核实秒数"),
    ("relay_only_seconds", "无页面证据秒数"),
)


def _iso(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.datetime.fromtimestamp(ms / 1000).astimezone().isoformat(timespec="seconds")


def rows_for_export(report: SessionReport, phones: bool = False) -> list[dict]:
    """One row per participant; phone numbers masked unless ``phones``."""
    participants = sorted(report.participants.values(), key=lambda r: (r.place, r.participant))
    return [export_row(rep, phones) for rep in participants]


def whole_seconds(seconds: float) -> int:
    """Seconds as the record states them: whole, never rounded up (57.6 watched is 57), so that
    no row claims more than the relay saw."""
    return int(max(0.0, seconds))


def export_row(rep: ParticipantReport, phones: bool = False) -> dict:
    """One participant's row of an export; the phone number masked unless ``phones``."""
    return {
        "member_id": rep.member_id,
        "name": rep.name,
        "place": rep.place,
        "phone": rep.phone if phones or not rep.phone else mask_phone(rep.phone),
        "first_join": _iso(rep.first_join_ms),
        "last_leave": _iso(rep.last_leave_ms),
        "seconds_watched": whole_seconds(rep.seconds_watched),
        "replay_seconds": whole_seconds(rep.replay_seconds),
        "total_seconds": whole_seconds(rep.total_seconds),
        "intervals": [[_iso(a), _iso(b)] for a, b in rep.intervals],
        "reconnects": rep.reconnects,
        "rollcalls": list(rep.rollcalls),  # the roll calls answered (report: those held)
        "credited": rep.credited,
        "participant": rep.participant,
        "identified_by": rep.identified_by,
        "unverified_seconds": whole_seconds(rep.unverified_s),
        "relay_only_seconds": whole_seconds(rep.relay_only_seconds),
    }


def flat_rows(report: SessionReport, phones: bool = False) -> list[list]:
    """Export rows as spreadsheet cells: intervals joined, credit as 是/否."""
    out = []
    for row in rows_for_export(report, phones):
        values = []
        for key, _ in COLUMNS:
            v = row[key]
            if key == "intervals":
                v = "; ".join(f"{a}~{b}" for a, b in v)
            elif key == "credited":
                v = "是" if v else "否"
            elif key == "rollcalls":  # answered of held
                v = f"{len(v)}/{len(report.rollcalls)}" if report.rollcalls else ""
            values.append(v)
        out.append(values)
    return out


def to_csv(report: SessionReport, receipt: dict | None, phones: bool = False) -> bytes:
    """The rows, then the receipt (as JSON, in one cell)."""
    rows: list[list] = [[zh for _, zh in COLUMNS], *flat_rows(report, phones)]
    if receipt:
        rows += [[], ["签名回执 (receipt)", json.dumps(receipt, ensure_ascii=False)]]
    return csv_bytes(rows)


JSON_EVENTS_PER_CHUNK = 5_000
JSON_EVENTS_OPEN = '"events": ['  # alone on its line, each event on one of its own after it


def json_chunks(
    report: SessionReport,
    rows: Iterable[Row],
    checkpoints: list[dict],
    receipt: dict | None,
    phones: bool = False,
) -> Iterator[bytes]:
    """The JSON export a piece at a time: the participants, and everything an offline check
    needs (every event, every checkpoint, the receipt). An event a line: a 90-minute lecture
    for 4,000 members has two million events, ~700 MB of JSON, which is never held whole."""
    head = {
        "format": "lecture-relay attendance export v1",
        "session": report.session,
        "start": _iso(report.start_ms),
        "end": _iso(report.end_ms),
        "credit_threshold": report.threshold,
        "replay_credit": report.replay_credit,
        "participants": rows_for_export(report, phones),
    }
    text = json.dumps(head, ensure_ascii=False, indent=1)
    yield (text[: text.rindex("}")].rstrip() + f",\n {JSON_EVENTS_OPEN}\n").encode()
    sep = ""
    chunk: list[str] = []
    for r in rows:
        event = {"seq": r.seq, "at_ms": r.at_ms, "kind": r.kind, "data": r.data, "hash": r.hash}
        chunk.append(sep + json.dumps(event, ensure_ascii=False, separators=(",", ":")))
        sep = ",\n"
        if len(chunk) >= JSON_EVENTS_PER_CHUNK:
            yield "".join(chunk).encode()
            chunk = []
    tail = json.dumps(
        {"checkpoints": checkpoints, "receipt": receipt}, ensure_ascii=False, indent=1
    )
    yield ("".join(chunk) + "\n ],\n" + tail[tail.index("{") + 1 :]).encode()


def to_xlsx(report: SessionReport, receipt: dict | None, phones: bool = False) -> bytes:
    sheets = [("考勤", [[zh for _, zh in COLUMNS], *flat_rows(report, phones)])]
    if receipt:
        sheets.append(("签名回执", [[key, str(value)] for key, value in receipt.items()]))
    return xlsx_bytes(sheets)


def audit_summary(
    report: SessionReport,
    roster: list,  # server.store.Member
    rooms: Sequence,  # server.store.Room
) -> dict:
    """What the audit page shows: per township expected/present/credited and absentees, its
    classrooms summed (connected, headcounts, check-ins) and each classroom's row (the page
    opens a township's on demand: a lecture may have 300), viewers over time."""
    townships: dict[str, dict] = {}

    def township(name: str) -> dict:
        return townships.setdefault(
            name,
            {"expected": 0, "present": 0, "replayed": 0, "credited": 0, "absent": [], "missed": [],
             "classrooms": 0, "classrooms_connected": 0, "headcount": 0, "checkins": 0},
        )  # fmt: skip

    answers: dict[str, int] = {}  # roll call -> members who answered it
    for rep in report.participants.values():
        if rep.participant.startswith("member:"):
            for call in rep.rollcalls:
                answers[call] = answers.get(call, 0) + 1
    for m in roster:
        t = township(m.township)
        t["expected"] += 1
        rep = report.participants.get(f"member:{m.member_id}")
        live = rep is not None and bool(rep.intervals or rep.watched)
        replayed = rep is not None and rep.replay_seconds > 0
        t["present"] += int(live)
        t["replayed"] += int(replayed)  # made up by replay (回放补学), live or not
        t["credited"] += int(rep is not None and rep.credited)
        if not live:  # absent from the lecture, whether or not made up by replay since
            t["absent"].append({"member_id": m.member_id, "name": m.name, "replayed": replayed})
        elif report.rollcalls and rep is not None and len(rep.rollcalls) < len(report.rollcalls):
            t["missed"].append(
                {"member_id": m.member_id, "name": m.name, "answered": len(rep.rollcalls)}
            )
    room_rows = []
    for room in rooms:
        checked = len({m for m, _ in report.checkins.get(room.code, [])})
        head = report.headcounts.get(room.code)
        connected = f"room:{room.code}" in report.participants
        room_rows.append(
            {
                "room": room.name,
                "township": room.township,
                "kind": room.kind,
                "headcount": head,
                "checkins": checked,
                "flag": head is not None and checked > head,
                "connected": connected,
            }
        )
        t = township(room.township)
        t["classrooms"] += 1
        t["classrooms_connected"] += int(connected)
        t["headcount"] += head or 0
        t["checkins"] += checked
    return {
        "session": report.session,
        "start": _iso(report.start_ms),
        "end": _iso(report.end_ms),
        "length_s": whole_seconds(report.length_s),
        "live": report.live,  # then length_s is the length so far
        "participants": len(report.participants),
        "credited": sum(1 for r in report.participants.values() if r.credited),
        "unverified_participants": sum(
            1 for r in report.participants.values() if r.unverified_s > 0
        ),
        "replay_participants": sum(1 for r in report.participants.values() if r.replayed),
        # standard WHEP players: the relay's evidence alone, shown apart, never credited
        "relay_only_participants": sum(1 for r in report.participants.values() if r.relay_only),
        "credit_threshold": report.threshold,
        "replay_credit": report.replay_credit,
        "policy_changes": [
            {
                "at": _iso(at),
                "by": by,
                "threshold_percent": pct,
                "replay_credit": replay,
                "rollcalls_required": need,
                "replay_without_rollcalls": without,
            }
            for at, by, pct, replay, need, without in report.policies
        ],  # fmt: skip
        "rollcalls_required": report.rollcalls_required,
        "replay_without_rollcalls": report.replay_without_rollcalls,
        "rollcalls": [
            {"call": call, "at": _iso(at), "answered": answers.get(call, 0)}
            for call, at in report.rollcalls
        ],
        "replay_seconds": whole_seconds(
            sum(r.replay_seconds for r in report.participants.values())
        ),
        "concurrency": report.concurrency,
        "townships": [{"township": k, **v} for k, v in sorted(townships.items())],
        "rooms": room_rows,
    }


def render_chunks(
    fmt: str,
    report: SessionReport,
    ledger: Ledger,
    checkpoints: list[Checkpoint],
    receipt: dict | None,
    phones: bool,
) -> Iterator[bytes]:
    """An export a piece at a time: the JSON carries every event (so that it can be checked
    offline), and is streamed; CSV and XLSX are one participant a row, made at once."""
    if fmt == "csv":
        yield to_csv(report, receipt, phones)
    elif fmt == "xlsx":
        yield to_xlsx(report, receipt, phones)
    else:
        cps = [c.as_json() for c in checkpoints]
        yield from json_chunks(report, ledger.rows(report.session), cps, receipt, phones)
