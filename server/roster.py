"""The member roster: import from CSV or XLSX with row-level errors, never a crash."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from server import tables
from server.store import TOWNSHIPS, Member, Store
from server.tables import ImportResult, RowError

HEADERS = {
    "member_id": ("member_id", "id", "党员编号", "编号"),
    "name": ("name", "姓名"),
    "township": ("township", "乡镇", "所属乡镇"),
    "phone": ("phone", "手机", "手机号", "电话"),
    "category": ("category", "类别", "人员类别"),
}
CATEGORIES = {
    "mobile": "mobile",
    "流动": "mobile",
    "流动党员": "mobile",
    "elderly": "elderly",
    "老年": "elderly",
    "年老体弱": "elderly",
    "home-bound": "home-bound",
    "居家": "home-bound",
    "行动不便": "home-bound",
    "other": "other",
    "其他": "other",
    "": "other",
}
PHONE = re.compile(r"^1\d{10}$")
REQUIRED = ("member_id", "name", "township")


def member_parser() -> Callable[[Callable[[str], str]], Member]:
    """How one roster row becomes a Member (a member id may appear once per file)."""
    seen: set[str] = set()

    def parse_row(get: Callable[[str], str]) -> Member:
        member_id, name, township = get("member_id"), get("name"), get("township")
        phone = get("phone").replace(" ", "")
        category = CATEGORIES.get(get("category").lower())
        if not member_id:
            raise RowError("党员编号 (member_id) is empty")
        if member_id in seen:
            raise RowError(f"党员编号 {member_id} appears twice")
        if not name:
            raise RowError("姓名 (name) is empty")
        if township not in TOWNSHIPS:
            raise RowError(f"unknown township {township!r}")
        if phone and not PHONE.match(phone):
            # the value is not repeated: errors are printed, and may end up in a log
            raise RowError(f"phone is not an 11-digit mobile number ({len(phone)} characters)")
        if category is None:
            raise RowError(f"unknown category {get('category')!r}")
        seen.add(member_id)
        return Member(member_id, name, township, phone, category)

    return parse_row


def import_file(
    store: Store, path: Path, progress: Callable[[int], None] | None = None
) -> ImportResult:
    """Import the good rows of a roster file; report the others by row number."""
    return tables.import_file(
        path, HEADERS, REQUIRED, member_parser(), store.upsert_members, progress
    )


def mask_phone(phone: str) -> str:
    return phone[:3] + "****" + phone[-4:] if len(phone) == 11 else ("*" * len(phone))
