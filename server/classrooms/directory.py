"""The county's classroom directory: imported from CSV or XLSX as the roster is (row-level
errors, never a crash), and the choice of a lecture's classrooms from it."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

from server import tables
from server.refusals import Invalid
from server.store import KINDS, TOWNSHIPS, Classroom, Store
from server.tables import ImportResult, RowError

HEADERS = {
    "id": ("id", "classroom_id", "教室编号", "编号"),
    "name": ("name", "名称", "教室名称"),
    "kind": ("kind", "类型", "教室类型"),
    "township": ("township", "乡镇", "所属乡镇"),
    "capacity": ("capacity", "容纳人数", "座位数"),
}
REQUIRED = ("id", "name", "kind", "township")
KIND_NAMES = {**{k: k for k in KINDS}, **{zh: k for k, zh in KINDS.items()}, "党校": "school"}
CLASSROOM_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
MAX_ROOMS = 1000  # a lecture's classrooms: the county has ~330; a typo's "all" stays bounded


def classroom_parser() -> Callable[[Callable[[str], str]], Classroom]:
    """How one directory row becomes a Classroom (an id may appear once per file)."""
    seen: set[str] = set()

    def parse_row(get: Callable[[str], str]) -> Classroom:
        cid, name, township = get("id"), get("name"), get("township")
        kind = KIND_NAMES.get(get("kind").lower())
        if not CLASSROOM_ID.fullmatch(cid):
            raise RowError("教室编号 (id) is 1-32 letters, digits, '-' or '_'")
        if cid in seen:
            raise RowError(f"教室编号 {cid} appears twice")
        if not name or len(name) > 64:
            raise RowError("名称 (name) is 1-64 characters")
        if kind is None:
            raise RowError(f"unknown kind {get('kind')!r} (乡镇党校, 教育基地 or 教学点)")
        if township not in TOWNSHIPS:
            raise RowError(f"unknown township {township!r}")
        capacity = get("capacity") or "0"
        if not capacity.isdigit() or int(capacity) > 10000:
            raise RowError("容纳人数 (capacity) is a whole number up to 10000")
        seen.add(cid)
        return Classroom(cid, name, kind, township, int(capacity))

    return parse_row


def import_file(
    store: Store, path: Path, progress: Callable[[int], None] | None = None
) -> ImportResult:
    """Import the good rows of a directory file (an id already there is updated)."""
    return tables.import_file(
        path, HEADERS, REQUIRED, classroom_parser(), store.upsert_classrooms, progress
    )


def _strings(value: object) -> bool:
    """A list of strings (as JSON gives it, or a sequence from the shell)."""
    return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)


def choose(
    store: Store,
    classrooms: str | Sequence[str] | None = None,
    townships: Sequence[str] | None = None,
) -> list[Classroom]:
    """A lecture's classrooms: ``townships`` (every classroom of each, township by township
    in the order given), else ``classrooms``:
    ``"schools"`` (the default: the township schools), ``"all"``, or a list of directory
    ids, in the order given."""
    if townships is not None and classrooms is not None:
        raise Invalid("give classrooms or townships, not both")
    if townships is not None:
        if not _strings(townships):
            raise Invalid("townships is a list of township names")
        unknown = [t for t in townships if t not in TOWNSHIPS]
        if unknown:
            raise Invalid(f"unknown township {unknown[0]!r}")
        chosen = [c for t in dict.fromkeys(townships) for c in store.classrooms(township=t)]
    elif classrooms is None or classrooms == "schools":
        chosen = store.classrooms(kind="school")
    elif classrooms == "all":
        chosen = store.classrooms()
    elif not _strings(classrooms):
        raise Invalid('classrooms is "schools", "all" or a list of classroom ids')
    else:
        directory = {c.id: c for c in store.classrooms()}
        missing = [c for c in classrooms if c not in directory]
        if missing:
            raise Invalid(f"no classroom {missing[0][:32]!r} in the directory")
        chosen = [directory[c] for c in dict.fromkeys(classrooms)]
    if not chosen:
        raise Invalid("no classroom chosen: the directory has none there")
    if len(chosen) > MAX_ROOMS:
        raise Invalid(f"at most {MAX_ROOMS} classrooms a lecture")
    return chosen
