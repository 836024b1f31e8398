"""The roster: imports that report bad rows by number, personal links, masked phones."""

from __future__ import annotations

import csv
import io
import json
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlparse

from openpyxl import Workbook

from server.attendance.events import End, Heartbeat, Join, Start
from server.attendance.ledger import Ledger, now_ms
from server.auth import TokenSigner
from server.roster import import_file
from server.store import Store
from tests.test_attendance_cli import cli

GOOD_AND_BAD = (
    "党员编号,姓名,乡镇,手机,类别\n"
    "LC001,张三,团堡镇,13800000001,流动党员\n"
    "LC002,李四,谋道镇,,老年\n"
    ",无号,团堡镇,,\n"
    "LC001,重复,团堡镇,,\n"
    "LC003,王五,火星镇,,\n"
    "LC004,赵六,团堡镇,12345,\n"
    "LC005,钱七,团堡镇,,外星人\n"
    "\n"
    "LC006,孙八,经济开发区,13900000006,其他\n"
)


def test_csv_import_keeps_good_rows_and_names_bad_ones(tmp_path):
    path = tmp_path / "roster.csv"
    path.write_bytes("\ufeff".encode() + GOOD_AND_BAD.encode())
    store = Store(tmp_path / "db.sqlite3")
    result = import_file(store, path)
    assert result.rows == 8 and result.imported == 3
    assert [n for n, _ in result.errors] == [4, 5, 6, 7, 8]
    reasons = dict(result.errors)
    assert "empty" in reasons[4] and "twice" in reasons[5] and "township" in reasons[6]
    assert "11-digit" in reasons[7] and "category" in reasons[8]
    assert "12345" not in reasons[7]  # a phone number is not repeated into the output
    assert store.member("LC001").category == "mobile"
    assert store.member("LC002").category == "elderly"
    assert [m.member_id for m in store.members("团堡镇")] == ["LC001"]
    # read apart, from another thread, the roster is the same as just imported
    with ThreadPoolExecutor(1) as pool:
        apart = pool.submit(store.roster_apart).result()
    assert apart == store.members() and len(apart) == 3


def test_xlsx_import_and_unreadable_files(tmp_path):
    wb = Workbook()
    ws = wb.active
    ws.append(["member_id", "name", "township", "phone", "category"])
    ws.append(["X1", "周九", "建南镇", 13700000009, "home-bound"])
    ws.append(["X2", None, "建南镇", None, None])
    wb.save(tmp_path / "r.xlsx")
    store = Store(tmp_path / "db.sqlite3")
    result = import_file(store, tmp_path / "r.xlsx")
    assert result.imported == 1 and result.errors == [(3, "姓名 (name) is empty")]
    (tmp_path / "bad.xlsx").write_bytes(b"not a spreadsheet")
    bad = import_file(store, tmp_path / "bad.xlsx")
    assert bad.imported == 0 and "cannot read bad.xlsx" in bad.errors[0][1]
    (tmp_path / "cols.csv").write_text("foo,bar\n1,2\n")
    cols = import_file(store, tmp_path / "cols.csv")
    assert cols.errors == [(1, "missing columns: member_id, name, township")]


def test_cli_import_and_personal_links(tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text(GOOD_AND_BAD, encoding="utf-8")
    out = cli(tmp_path, "roster", "import", str(path))
    assert out.returncode == 0
    assert "imported 3 of 8 rows, 5 errors" in out.stdout
    assert "row 6: unknown township" in out.stderr and "rows" in out.stderr
    created = cli(tmp_path, "session", "create", "--title", "链接", "--json")
    sid = json.loads(created.stdout)["session_id"]
    links = cli(tmp_path, "links", sid, "--format", "csv", "--township", "团堡镇")
    assert links.returncode == 0
    rows = list(csv.reader(io.StringIO(links.stdout.lstrip("\ufeff"))))
    assert rows[0] == ["党员编号", "姓名", "乡镇", "观看链接"]
    assert [r[0] for r in rows[1:]] == ["LC001"]
    token = parse_qs(urlparse(rows[1][3]).query)["token"][0]
    secret = (tmp_path / "data" / "secret.key").read_bytes()
    claims = TokenSigner(secret).verify(token)
    assert (claims.role, claims.session, claims.subject) == ("member", sid, "LC001")
    xlsx = tmp_path / "links.xlsx"
    assert cli(tmp_path, "links", sid, "--format", "xlsx", "--out", str(xlsx)).returncode == 0
    assert xlsx.read_bytes()[:2] == b"PK"
    assert xlsx.stat().st_mode & 0o777 == 0o600  # every member's token: the owner's alone
    nobody = cli(tmp_path, "links", sid, "--township", "毛坝镇")
    assert nobody.returncode == 2 and "no member of 毛坝镇" in nobody.stderr
    # names and tokens handed out are in the session's ledger, signed, as any export
    ledger = Ledger(tmp_path / "data" / "ledger.sqlite3")
    try:
        rows = list(ledger.rows(sid))
        assert [(r.kind, r.data["format"]) for r in rows] == [
            ("export", "links-csv"),
            ("export", "links-xlsx"),
        ]
        assert max(c.seq for c in ledger.checkpoints(sid)) == rows[-1].seq
    finally:
        ledger.close()


async def test_members_see_their_own_record_and_exports_mask_phones(relay):
    from server.store import Member

    links = relay.new_session()
    sid = links["session_id"]
    relay.state.store.upsert_members([Member("P1", "吴十", "团堡镇", "13812345678")])
    await relay.state.attendance.append(sid, Join("member:P1", "peer1", "token", "1.2.3.4", False))
    me = relay.token("member", sid, "P1")
    async with relay.http.get(
        f"{relay.base_url}/api/sessions/{sid}/me", headers={"Authorization": f"Bearer {me}"}
    ) as resp:
        body = await resp.json()
        assert resp.status == 200 and body["member_id"] == "P1" and "phone" not in body
        assert (body["name"], body["place"]) == ("吴十", "团堡镇")
    admin = relay.token("admin", None)
    auth = {"Authorization": f"Bearer {admin}"}
    async with relay.http.get(f"{relay.base_url}/api/sessions/{sid}/me", headers=auth) as resp:
        assert resp.status == 403
    url = f"{relay.base_url}/api/sessions/{sid}/attendance?format=json"
    async with relay.http.get(url, headers=auth) as resp:
        doc = await resp.json()
    assert doc["participants"][0]["phone"] == "138****5678"
    async with relay.http.get(url + "&phones=1", headers=auth) as resp:
        doc = await resp.json()
    assert doc["participants"][0]["phone"] == "13812345678"
    exports = [e["data"] for e in doc["events"] if e["kind"] == "export"]
    assert [e["phones"] for e in exports] == [False, True]


async def test_a_member_reads_their_time_against_the_lecture_during_and_after_it(relay):
    """``/me`` says what the member's credit is judged against: the lecture's length so far
    while it is live, then its length and the time it takes (the watch page shows both)."""
    from server.store import Member

    links = relay.new_session()
    sid = links["session_id"]
    relay.state.store.upsert_members([Member("P2", "郑二", "团堡镇")])
    me = {"Authorization": f"Bearer {relay.token('member', sid, 'P2')}"}
    url = f"{relay.base_url}/api/sessions/{sid}/me"

    async def mine() -> dict:
        async with relay.http.get(url, headers=me) as resp:
            assert resp.status == 200
            return await resp.json()

    before = await mine()
    assert (before["name"], before["seconds_watched"], before["credited"]) == ("郑二", 0, False)
    assert not before["lecture"]["started"] and not before["lecture"]["ended"]
    ledger = relay.state.attendance.ledger
    t0 = now_ms() - 200_000
    await ledger.append(sid, Start("pub"), t0)
    await ledger.append(sid, Join("member:P2", "peer2", "token", "1.2.3.4", False), t0)
    for i in range(1, 7):  # 60 s watched on both kinds of evidence
        await ledger.append(
            sid, Heartbeat("peer2", i * 25, True, True, i * 90, i * 50), t0 + i * 10_000
        )
    live = await mine()
    assert live["seconds_watched"] == 60 and not live["lecture"]["ended"]
    assert 199 <= live["lecture"]["seconds"] <= 230  # as of now, 200 s after the start
    await ledger.append(sid, End("lecturer"), t0 + 100_000)
    after = await mine()
    terms = after["lecture"]
    assert terms["ended"] and (terms["seconds"], terms["required_seconds"]) == (100, 80)
    assert after["seconds_watched"] == 60 and after["credited"] is False
    assert terms["threshold"] == 0.8 and terms["replay_credit"] is True


async def test_open_link_identifies_members_against_the_roster(relay):
    from server.store import Member

    links = relay.new_session()
    sid = links["session_id"]
    relay.state.store.upsert_members([Member("Q1", "郑一", "谋道镇")])
    url = f"{relay.base_url}/api/sessions/{sid}/identify"
    auth = {"Authorization": f"Bearer {links['viewer_token']}"}
    async with relay.http.post(url, json={"member_id": "Q1", "name": "郑二"}, headers=auth) as r:
        assert r.status == 404
    async with relay.http.post(url, json={"member_id": "Q1", "name": "郑一"}, headers=auth) as r:
        assert r.status == 200
        token = (await r.json())["token"]
    claims = relay.state.signer.verify(token)
    assert (claims.role, claims.subject, claims.via) == ("member", "Q1", "open")
    member = {"Authorization": f"Bearer {token}"}
    async with relay.http.post(url, json={"member_id": "Q1", "name": "郑一"}, headers=member) as r:
        assert r.status == 403  # only the open link identifies
    from server.routes.whip import identity_of

    assert identity_of(claims, "127.0.0.1", False).identified_by == "open"
