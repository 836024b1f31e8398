"""Bodies arrive in pieces on real links: every kind is read whole, up to its limit, or refused.

Each request here is written in several TCP writes with pauses between them, as a phone's
offer or a school's spreadsheet crosses a real network.
"""

from __future__ import annotations

import io
import json

from server.routes.bodies import parse_json
from tests.calls import call, call_in_pieces
from tests.test_signalling import make_offer

TEACHER_HEADER = "姓名,单位,层级,所属党校,专长,联系方式\n"


def teacher_rows(n: int) -> str:
    return TEACHER_HEADER + "".join(f"教师{i},忠路镇党校,乡镇,忠路镇党校,党建,\n" for i in range(n))


async def test_a_json_body_in_three_writes_is_read_whole(relay):
    admin = relay.token("admin", None)
    body = json.dumps({"title": "分段到达的讲座", "video_codec": "VP8"}).encode()
    status, _, answer = await call_in_pieces(
        relay, "POST", "/api/sessions", body, "application/json", admin, pieces=3, pause_s=0.3
    )
    assert status == 201, answer
    assert json.loads(answer)["title"] == "分段到达的讲座"


async def test_a_phone_sized_sdp_offer_in_pieces_gets_an_answer(relay):
    links = relay.new_session()
    offer = (await make_offer()).encode()
    status, headers, answer = await call_in_pieces(
        relay,
        "POST",
        f"/whep/{links['session_id']}",
        offer,
        "application/sdp",
        links["viewer_token"],
        pieces=4,
    )
    assert status == 201, answer
    assert headers["location"].startswith(f"/whep/{links['session_id']}/")
    assert b"a=ice-ufrag:" in answer


async def test_a_200_row_csv_in_two_writes_imports_every_row(relay):
    admin = relay.token("admin", None)
    status, _, answer = await call_in_pieces(
        relay, "POST", "/api/teachers/import", teacher_rows(200).encode(), "text/csv", admin, 2
    )
    assert status == 200, answer
    assert json.loads(answer)["imported"] == 200
    status, teachers = await call(relay, "GET", "/api/teachers", admin)
    assert len(teachers) == 200


async def test_an_xlsx_in_pieces_imports_every_row(relay):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    for line in teacher_rows(120).splitlines():
        ws.append(line.split(","))
    buf = io.BytesIO()
    wb.save(buf)
    xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    admin = relay.token("admin", None)
    status, _, answer = await call_in_pieces(
        relay, "POST", "/api/teachers/import", buf.getvalue(), xlsx, admin, pieces=5, pause_s=0.1
    )
    assert status == 200, answer
    assert json.loads(answer)["imported"] == 120


async def test_an_import_past_the_limit_is_413_with_or_without_a_length(relay):
    admin = relay.token("admin", None)
    big = teacher_rows(1).encode() + b"x" * (21 * 1024 * 1024)
    for chunked in (False, True):
        status, _, answer = await call_in_pieces(
            relay, "POST", "/api/teachers/import", big, "text/csv", admin, 4, 0.05, chunked
        )
        assert status == 413, answer
    status, teachers = await call(relay, "GET", "/api/teachers", admin)
    assert teachers == []


async def test_an_sdp_offer_past_the_limit_in_chunks_is_413(relay):
    links = relay.new_session()
    big = (await make_offer()).encode() + b"a=x-padding:" + b"y" * (70 * 1024) + b"\r\n"
    status, _, answer = await call_in_pieces(
        relay,
        "POST",
        f"/whep/{links['session_id']}",
        big,
        "application/sdp",
        links["viewer_token"],
        pieces=3,
        pause_s=0.05,
        chunked=True,
    )
    assert status == 413, answer
    assert relay.state.live.find(links["session_id"]) is None or not (
        relay.state.live.find(links["session_id"]).viewers
    )


def test_strict_json_refuses_nan_infinity_and_lone_surrogates():
    assert parse_json(b'{"a": [1, "\\u4e2d"]}') == {"a": [1, "中"]}
    for bad in (b'{"p": NaN}', b'{"p": Infinity}', b'{"p": -Infinity}', b'{"v": "\\ud800"}'):
        try:
            parse_json(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")


async def test_a_lone_surrogate_or_nan_in_any_json_body_is_a_400(relay):
    links = relay.new_session()
    sid = links["session_id"]
    admin, member = relay.token("admin", None), relay.token("member", sid, "m1")
    for path, token, body in (
        ("/api/sessions", admin, b'{"title": "\\ud800"}'),
        (f"/api/sessions/{sid}/questions", member, b'{"text": "\\udfff?"}'),
        (f"/api/sessions/{sid}/replay/progress", member, b'{"position": NaN, "view": "a"}'),
    ):
        status, answer = await call(relay, "POST", path, token, data=body, ctype="application/json")
        assert status == 400, (path, answer)
        assert "JSON" in answer["error"]
