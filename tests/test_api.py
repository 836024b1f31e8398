"""The JSON API behind the pages, with its refusals."""

from __future__ import annotations

from tests.calls import call


async def test_room_joins_by_code_and_only_rooms_report_headcounts(relay):
    links = relay.new_session()
    sid = links["session_id"]
    room = links["rooms"][0]
    status, body = await call(relay, "POST", "/api/rooms/join", json={"code": room["code"]})
    assert status == 200 and body["session_id"] == sid and body["room"] == room["name"]
    token = body["token"]
    status, body = await call(relay, "GET", f"/api/sessions/{sid}", token)
    assert status == 200 and body["role"] == "room" and body["room"] == room["name"]
    assert body["ice_servers"] == []

    status, _ = await call(relay, "POST", f"/api/sessions/{sid}/headcount", token, {"count": 42})
    assert status == 200
    status, body = await call(relay, "POST", f"/api/sessions/{sid}/headcount", token, {"count": -1})
    assert status == 400 and "count" in body["error"]
    status, body = await call(
        relay, "POST", f"/api/sessions/{sid}/headcount", links["viewer_token"], {"count": 3}
    )
    assert status == 403
    status, body = await call(relay, "GET", f"/api/sessions/{sid}/stats", links["lecturer_token"])
    assert status == 200 and body["headcount_total"] == 42
    assert {r["name"]: r["headcount"] for r in body["rooms"]}[room["name"]] == 42


async def test_room_code_errors(relay):
    relay.new_session()
    status, body = await call(relay, "POST", "/api/rooms/join", json={"code": "12"})
    assert status == 400 and "8 digits" in body["error"]
    unused = next(
        c for c in (f"{n:08d}" for n in range(100)) if relay.state.store.room_by_code(c) is None
    )
    status, body = await call(relay, "POST", "/api/rooms/join", json={"code": unused})
    assert status == 404 and "no room" in body["error"]
    status, body = await call(
        relay, "POST", "/api/rooms/join", data="{", headers={"Content-Type": "application/json"}
    )
    assert status == 400 and "JSON" in body["error"]
    status, body = await call(relay, "POST", "/api/rooms/join", data="code=1")
    assert status == 415


async def test_stats_need_the_lecturer_and_sessions_need_an_admin(relay):
    links = relay.new_session()
    sid = links["session_id"]
    status, _ = await call(relay, "GET", f"/api/sessions/{sid}/stats", links["viewer_token"])
    assert status == 403
    status, _ = await call(relay, "POST", "/api/sessions", links["lecturer_token"], {"title": "x"})
    assert status == 403
    admin = relay.token("admin", None)
    status, body = await call(relay, "POST", "/api/sessions", admin, {"title": "新讲座"})
    assert status == 201 and len(body["rooms"]) == 15
    status, body = await call(relay, "POST", "/api/sessions", admin, {"title": " "})
    assert status == 400
    status, body = await call(relay, "GET", "/api/sessions/nope", admin)
    assert status == 404


async def test_unknown_routes_and_methods_answer_json_not_tracebacks(relay):
    status, body = await call(relay, "GET", "/no/such/page")
    assert status == 404 and body["status"] == 404
    status, body = await call(relay, "PUT", "/api/rooms/join")
    assert status == 405 and body["error"]


async def test_links_made_through_the_api_point_where_the_caller_reached_us(relay):
    admin = relay.token("admin", None)
    async with relay.http.post(
        f"{relay.base_url}/api/sessions",
        json={"title": "链接地址"},
        headers={"Authorization": f"Bearer {admin}"},
    ) as resp:
        body = await resp.json()
    assert body["urls"]["watch"].startswith(relay.base_url + "/watch?session=")


async def test_openapi_document_lists_every_api_route(relay):
    async with relay.http.get(f"{relay.base_url}/api/openapi.json") as resp:
        doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    assert "post" in paths["/whip/{session}"] and "delete" in paths["/whep/{session}/{resource}"]
    assert "post" in paths["/api/trainings/{id}/{decision}"]
    assert paths["/api/tasks"]["post"]["summary"].startswith("下单式")
    routes = {
        (r.method.lower(), r.resource.canonical)
        for r in relay.app.router.routes()
        if r.resource and r.resource.canonical.startswith("/api/") and r.method != "HEAD"
    }
    import re

    documented = {(m, p) for p, ops in paths.items() for m in ops}
    for method, path in routes:
        assert (method, re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)) in documented, path
