"""Tokens and page URLs of a session: what `session create --json` prints and the API returns."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

from server.auth import TokenSigner
from server.config import Config
from server.store import Member, Session
from server.tables import csv_bytes, xlsx_bytes


def session_links(
    config: Config, signer: TokenSigner, session: Session, base_url: str | None = None
) -> dict:
    """``base_url``: where the asker reached us (an API call), else the configured URL."""
    ttl = config.token_ttl_s
    base = page_base(config, base_url)
    sid = session.id
    lecturer = signer.issue("lecturer", sid, "lecturer", ttl)
    viewer = signer.issue("viewer", sid, None, ttl)
    rooms = []
    for room in session.rooms:
        token = signer.issue("room", sid, room.code, ttl)
        rooms.append(
            {
                "name": room.name,
                "township": room.township,
                "kind": room.kind,
                "code": room.code,
                "token": token,
                "url": f"{base}/room?session={sid}&token={quote(token)}",
            }
        )
    return {
        "session_id": sid,
        "title": session.title,
        "video_codec": session.video_codec,
        "lecturer_token": lecturer,
        "viewer_token": viewer,
        "rooms": rooms,
        "urls": {
            "lecturer": f"{base}/lecturer?session={sid}&token={quote(lecturer)}",
            "watch": f"{base}/watch?session={sid}&token={quote(viewer)}",
            "room_join": f"{base}/room",
            "whip": f"{base}/whip/{sid}",
            "whep": f"{base}/whep/{sid}",
        },
    }


def page_base(config: Config, base_url: str | None = None) -> str:
    """Where links send people: the configured public URL, else where the asker reached us
    (an API call), else the address the server listens on."""
    return config.public_url.rstrip("/") if config.public_url else (base_url or config.base_url)


def member_links(
    config: Config,
    signer: TokenSigner,
    session: Session,
    members: list[Member],
    base_url: str | None = None,
) -> list[dict]:
    """One signed, expiring watch link per member, for distribution by message."""
    base = page_base(config, base_url)
    out = []
    for m in members:
        token = signer.issue("member", session.id, m.member_id, config.token_ttl_s)
        out.append(
            {
                "member_id": m.member_id,
                "name": m.name,
                "township": m.township,
                "url": f"{base}/watch?session={session.id}&token={quote(token)}",
            }
        )
    return out


LINK_COLUMNS = (
    ("member_id", "党员编号"),
    ("name", "姓名"),
    ("township", "乡镇"),
    ("url", "观看链接"),
)


def _link_rows(rows: list[dict]) -> Iterator[list]:
    yield [zh for _, zh in LINK_COLUMNS]
    for r in rows:
        yield [r[k] for k, _ in LINK_COLUMNS]


def to_csv_bytes(rows: list[dict]) -> bytes:
    return csv_bytes(_link_rows(rows))


def to_xlsx_bytes(rows: list[dict]) -> bytes:
    return xlsx_bytes([("观看链接", _link_rows(rows))])
