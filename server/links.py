"""Tokens and page URLs of a session: what `session create --json` prints and the API returns."""

from __future__ import annotations

from urllib.parse import quote

from server.auth import TokenSigner
from server.config import Config
from server.store import Session


def session_links(config: Config, signer: TokenSigner, session: Session) -> dict:
    ttl = config.token_ttl_s
    base = config.base_url
    sid = session.id
    lecturer = signer.issue("lecturer", sid, "lecturer", ttl)
    viewer = signer.issue("viewer", sid, None, ttl)
    rooms = []
    for room in session.rooms:
        token = signer.issue("room", sid, room.code, ttl)
        rooms.append(
            {
                "name": room.name,
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
