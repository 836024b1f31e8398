"""The member roster: import from CSV or XLSX with row-level errors, never a crash."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from server.store import TOWNSHIPS, Member, Store

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


@dataclass
class ImportResult:
    rows: int = 0
    imported: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (row number, reason)


def read_rows(path: Path) -> Iterator[list[str]]:
    """The rows of a CSV (UTF-8, BOM or not) or XLSX file, as stripped strings."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        wb = load_workbook(path, read_only=True, data_only=True)
        for row in wb.active.iter_rows(values_only=True):
            yield ["" if v is None else str(v).strip() for v in row]
        wb.close()
    else:
        text = path.read_bytes().decode("utf-8-sig", errors="replace")
        yield from ([c.strip() for c in r] for r in csv.reader(io.StringIO(text)))


def header_index(
    header: list[str] | None, headers: dict[str, tuple[str, ...]], required: tuple[str, ...]
) -> tuple[dict[str, int], str | None]:
    """Which column holds each field (English or Chinese titles); an error for row 1."""
    if header is None:
        return {}, "the file is empty"
    index: dict[str, int] = {}
    for key, names in headers.items():
        for i, title in enumerate(header):
            if title.strip().lower() in names:
                index[key] = i
                break
    missing = [k for k in required if k not in index]
    return index, (f"missing columns: {', '.join(missing)}" if missing else None)


def cell(row: list[str], index: dict[str, int], key: str) -> str:
    i = index.get(key)
    return row[i] if i is not None and i < len(row) else ""


def parse(
    rows: Iterator[list[str]], progress: Callable[[int], None] | None = None
) -> tuple[list[Member], ImportResult]:
    result = ImportResult()
    members: list[Member] = []
    seen: set[str] = set()
    index, problem = header_index(next(rows, None), HEADERS, ("member_id", "name", "township"))
    if problem:
        result.errors.append((1, problem))
        return members, result

    for number, row in enumerate(rows, start=2):
        if not any(row):
            continue
        result.rows += 1
        if progress and result.rows % 1000 == 0:
            progress(result.rows)
        member_id, name = cell(row, index, "member_id"), cell(row, index, "name")
        township = cell(row, index, "township")
        phone = cell(row, index, "phone").replace(" ", "")
        category = CATEGORIES.get(cell(row, index, "category").lower())
        if not member_id:
            result.errors.append((number, "党员编号 (member_id) is empty"))
        elif member_id in seen:
            result.errors.append((number, f"党员编号 {member_id} appears twice"))
        elif not name:
            result.errors.append((number, "姓名 (name) is empty"))
        elif township not in TOWNSHIPS:
            result.errors.append((number, f"unknown township {township!r}"))
        elif phone and not PHONE.match(phone):
            result.errors.append((number, f"phone {phone!r} is not an 11-digit mobile number"))
        elif category is None:
            result.errors.append((number, f"unknown category {cell(row, index, 'category')!r}"))
        else:
            seen.add(member_id)
            members.append(Member(member_id, name, township, phone, category))
    if progress:
        progress(result.rows)
    return members, result


def import_file(
    store: Store, path: Path, progress: Callable[[int], None] | None = None
) -> ImportResult:
    """Import the good rows of a roster file; report the others by row number."""
    try:
        rows = read_rows(path)
        members, result = parse(rows, progress)
    except (OSError, ValueError, KeyError) as exc:  # unreadable or not a spreadsheet
        return ImportResult(errors=[(0, f"cannot read {path.name}: {exc}")])
    except Exception as exc:  # noqa: BLE001 - openpyxl raises its own types on bad files
        return ImportResult(errors=[(0, f"cannot read {path.name}: {type(exc).__name__}")])
    result.imported = store.upsert_members(members)
    return result


def mask_phone(phone: str) -> str:
    return phone[:3] + "****" + phone[-4:] if len(phone) == 11 else ("*" * len(phone))
