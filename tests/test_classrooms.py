"""Every classroom of the county (issue 28): a directory imported like the roster, chosen per
lecture (a township's, all schools, all, a list), each room with its own secret code, its
check-ins limited to its township, and the audit summing classrooms into townships."""

from __future__ import annotations

import json

from server.store import TOWNSHIPS, Member
from tests.calls import call
from tests.test_attendance import next_report, report, watching_in
from tests.test_attendance_cli import cli


def directory_csv(points_per_township: int) -> str:
    """The 15 schools are in every directory; this adds teaching points and a base or two."""
    lines = ["教室编号,名称,类型,所属乡镇,容纳人数"]
    for ti, township in enumerate(TOWNSHIPS):
        for k in range(points_per_township):
            lines.append(f"p{ti:02d}{k:03d},第{k + 1}村教学点,教学点,{township},30")
        lines.append(f"b{ti:02d},{township}党员教育基地,教育基地,{township},")
    return "\n".join(lines) + "\n"


def admin(relay) -> str:
    return relay.token("admin", None, "组织部")


async def test_a_lecture_with_300_classrooms_from_an_import(relay, tmp_path):
    path = tmp_path / "classrooms.csv"
    # 15 schools + 15 bases + 15 x 18 points = 300
    path.write_text(directory_csv(18) + "bad id!,某教室,教学点,团堡镇,\nx1,某教室,礼堂,团堡镇,\n")
    from server.classrooms.directory import import_file

    result = import_file(relay.state.store, path)
    assert result.imported == 285 and [n for n, _ in result.errors] == [287, 288]
    assert "unknown kind" in result.errors[1][1]

    status, made = await call(
        relay, "POST", "/api/sessions", admin(relay), {"title": "全县", "classrooms": "all"}
    )
    assert status == 201, made
    assert len(made["rooms"]) == 300
    codes = [r["code"] for r in made["rooms"]]
    assert len(set(codes)) == 300 and all(len(c) == 8 and c.isdigit() for c in codes)
    kinds = [r["kind"] for r in made["rooms"]]
    assert kinds.count("school") == 15 and kinds.count("base") == 15
    sid = made["session_id"]
    lecturer = made["lecturer_token"]

    # the lecturer's wall pages through them; the stats carry each room's township
    status, page = await call(relay, "GET", f"/api/sessions/{sid}/wall", lecturer)
    assert status == 200 and len(page["rooms"]) == 24 and page["pages"] == 13
    status, last = await call(relay, "GET", f"/api/sessions/{sid}/wall?page=99", lecturer)
    assert last["page"] == 12 and len(last["rooms"]) == 300 - 12 * 24
    status, town = await call(relay, "GET", f"/api/sessions/{sid}/wall?township=团堡镇", lecturer)
    assert {r["township"] for r in town["rooms"]} == {"团堡镇"} and len(town["rooms"]) == 20
    status, _ = await call(relay, "GET", f"/api/sessions/{sid}/wall?page=-1", lecturer)
    assert status == 400
    status, stats = await call(relay, "GET", f"/api/sessions/{sid}/stats", lecturer)
    assert len(stats["rooms"]) == 300 and stats["rooms"][0]["township"] == TOWNSHIPS[0]

    # a township's classrooms only; a list of ids; an unknown one refused by name
    body = {"title": "团堡镇", "townships": ["团堡镇"]}
    status, made = await call(relay, "POST", "/api/sessions", admin(relay), body)
    assert status == 201 and len(made["rooms"]) == 20
    assert made["rooms"][0]["kind"] == "school"  # the school first
    body = {"title": "两处", "classrooms": ["p08000", "t09"]}
    status, made = await call(relay, "POST", "/api/sessions", admin(relay), body)
    assert [r["name"] for r in made["rooms"]] == ["第1村教学点", "团堡镇"]
    for bad, reason in (
        ({"classrooms": ["nope"]}, "no classroom"),
        ({"townships": ["某乡"]}, "unknown township"),
        ({"classrooms": "all", "townships": ["团堡镇"]}, "not both"),
        ({"classrooms": 7}, "classrooms is"),
    ):
        status, body = await call(
            relay, "POST", "/api/sessions", admin(relay), {"title": "x", **bad}
        )
        assert status == 400 and reason in body["error"], body

    # the directory as the admin page reads it; nobody else reads it
    status, listed = await call(relay, "GET", "/api/classrooms?township=团堡镇", admin(relay))
    assert status == 200 and len(listed["classrooms"]) == 20
    assert {c["kind"] for c in listed["classrooms"]} == {"school", "base", "point"}
    status, _ = await call(relay, "GET", "/api/classrooms", lecturer)
    assert status == 403

    # the default stays the 15 township schools
    status, made = await call(relay, "POST", "/api/sessions", admin(relay), {"title": "默认"})
    assert [r["name"] for r in made["rooms"]] == list(TOWNSHIPS)


async def test_a_teaching_points_checkin_counts_in_its_townships_totals(relay, tmp_path):
    store = relay.state.store
    store.upsert_members(
        [
            Member("TB01", "李四", "团堡镇"),
            Member("TB02", "王五", "团堡镇"),
            Member("MD01", "张三", "谋道镇"),
        ]
    )
    path = tmp_path / "classrooms.csv"
    path.write_text(directory_csv(1))
    from server.classrooms.directory import import_file

    assert import_file(store, path).imported == 30
    body = {"title": "教学点", "townships": ["团堡镇", "谋道镇"]}
    status, links = await call(relay, "POST", "/api/sessions", admin(relay), body)
    assert status == 201
    sid = links["session_id"]
    point = next(
        r for r in links["rooms"] if r["name"] == "第1村教学点" and r["township"] == "团堡镇"
    )
    status, info = await call(relay, "GET", f"/api/sessions/{sid}", point["token"])
    assert (info["room"], info["township"]) == ("第1村教学点", "团堡镇")

    async with watching_in(relay, links, point["token"]) as w:
        v = w.viewer
        path = f"/api/sessions/{sid}/checkin"
        status, body = await call(relay, "POST", path, point["token"], {"member_id": "TB01"})
        assert status == 200 and body["name"] == "李四"
        # another township's member: answered as an unknown id, nothing recorded
        head = relay.state.attendance.ledger.head(sid)
        status, body = await call(relay, "POST", path, point["token"], {"member_id": "MD01"})
        assert status == 404 and "name" not in body
        assert relay.state.attendance.ledger.head(sid) == head
        status, _ = await call(
            relay, "POST", f"/api/sessions/{sid}/headcount", point["token"], {"count": 12}
        )
        assert status == 200
        status, found = await call(relay, "GET", f"/api/sessions/{sid}/roster?q=张", point["token"])
        assert found["township"] == "团堡镇" and found["members"] == []  # 谋道镇's 张三 unseen
        for _ in range(2):
            await next_report(relay, sid, v)
            assert (await v.heartbeat(relay.http))[0] == 200

    rep = report(relay, sid)
    member = rep.participants["member:TB01"]
    assert member.seconds_watched > 0
    status, audit = await call(relay, "GET", f"/api/sessions/{sid}/audit", admin(relay))
    assert status == 200
    towns = {t["township"]: t for t in audit["townships"]}
    tb = towns["团堡镇"]
    assert (tb["expected"], tb["present"], tb["checkins"], tb["headcount"]) == (2, 1, 1, 12)
    assert (tb["classrooms"], tb["classrooms_connected"]) == (3, 1)  # school, base, point
    assert towns["谋道镇"]["checkins"] == 0 and towns["谋道镇"]["classrooms"] == 3
    row = next(
        r for r in audit["rooms"] if r["room"] == "第1村教学点" and r["township"] == "团堡镇"
    )
    assert (row["kind"], row["connected"], row["checkins"], row["headcount"]) == (
        "point",
        True,
        1,
        12,
    )


async def test_the_directory_from_the_shell_and_a_lecture_of_one_township(tmp_path):
    path = tmp_path / "classrooms.csv"
    path.write_text(directory_csv(2))
    done = cli(tmp_path, "classrooms", "import", str(path))
    assert "imported 45 of 45 rows, 0 errors" in done.stdout
    listed = json.loads(
        cli(tmp_path, "classrooms", "list", "--township", "谋道镇", "--json").stdout
    )
    assert [c["kind"] for c in listed] == ["school", "base", "point", "point"]
    made = cli(tmp_path, "session", "create", "--title", "谋道", "--township", "谋道镇", "--json")
    rooms = json.loads(made.stdout)["rooms"]
    assert [r["name"] for r in rooms] == [
        "谋道镇",
        "谋道镇党员教育基地",
        "第1村教学点",
        "第2村教学点",
    ]
    made = cli(tmp_path, "session", "create", "--title", "两处", "--classrooms", "p10000,b10")
    assert "谋道镇 第1村教学点: 教室码" in made.stdout
    bad = cli(tmp_path, "session", "create", "--title", "x", "--classrooms", "nope")
    assert bad.returncode == 2 and "no classroom 'nope'" in bad.stderr
