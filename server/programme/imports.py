"""Teacher pool and course library imports from CSV or XLSX: good rows in, bad rows named."""

from __future__ import annotations

import re
from pathlib import Path

from server.programme.store import ProgrammeStore
from server.roster import ImportResult, cell, header_index, read_rows

TEACHER_HEADERS = {
    "name": ("name", "姓名"),
    "organisation": ("organisation", "organization", "单位", "工作单位"),
    "tier": ("tier", "层级", "类别"),
    "school": ("school", "所属党校", "党校"),
    "tags": ("tags", "专长", "擅长领域"),
    "contact": ("contact", "联系方式", "电话"),
}
TIERS = {
    "city": "city",
    "市级": "city",
    "市": "city",
    "township": "township",
    "乡镇": "township",
    "乡镇级": "township",
}
COURSE_HEADERS = {
    "title": ("title", "课程名称", "课程"),
    "topic": ("topic", "专题", "主题"),
    "class_hours": ("class_hours", "hours", "课时"),
    "teachers": ("teachers", "授课教师", "教师"),
    "materials": ("materials", "资料", "课件"),
}
SPLIT = re.compile(r"[;；、,，/]")


def _school(store: ProgrammeStore, text: str) -> str | None:
    for s in store.schools():
        if text in (s["id"], s["name"], s["name"].removesuffix("党校")):
            return s["id"]
    return None


def import_teachers(store: ProgrammeStore, path: Path) -> ImportResult:
    result = ImportResult()
    try:
        rows = read_rows(path)
        index, problem = header_index(
            next(rows, None), TEACHER_HEADERS, ("name", "organisation", "tier", "school")
        )
        good = []
        if problem:
            result.errors.append((1, problem))
            return result
        for number, row in enumerate(rows, start=2):
            if not any(row):
                continue
            result.rows += 1
            name, org = cell(row, index, "name"), cell(row, index, "organisation")
            tier = TIERS.get(cell(row, index, "tier").lower())
            school = _school(store, cell(row, index, "school"))
            if not name:
                result.errors.append((number, "姓名 (name) is empty"))
            elif not org:
                result.errors.append((number, "单位 (organisation) is empty"))
            elif tier is None:
                result.errors.append(
                    (number, f"层级 must be 市级 or 乡镇: {cell(row, index, 'tier')!r}")
                )
            elif school is None:
                result.errors.append((number, f"unknown school {cell(row, index, 'school')!r}"))
            else:
                tags = tuple(t.strip() for t in SPLIT.split(cell(row, index, "tags")) if t.strip())
                good.append((name, org, tier, school, tags, cell(row, index, "contact")))
    except Exception as exc:  # noqa: BLE001 - an unreadable file is one clear error
        return ImportResult(errors=[(0, f"cannot read {path.name}: {type(exc).__name__}")])
    result.imported = len(store.add_teachers(good))
    return result


def import_courses(store: ProgrammeStore, path: Path) -> ImportResult:
    result = ImportResult()
    try:
        rows = read_rows(path)
        index, problem = header_index(
            next(rows, None), COURSE_HEADERS, ("title", "topic", "class_hours")
        )
        if problem:
            result.errors.append((1, problem))
            return result
        by_name: dict[str, list[int]] = {}
        for t in store.teachers():
            by_name.setdefault(t.name, []).append(t.id)
        good = []
        for number, row in enumerate(rows, start=2):
            if not any(row):
                continue
            result.rows += 1
            title, topic = cell(row, index, "title"), cell(row, index, "topic")
            try:
                hours = float(cell(row, index, "class_hours"))
            except ValueError:
                hours = -1
            names = [n.strip() for n in SPLIT.split(cell(row, index, "teachers")) if n.strip()]
            unknown = [n for n in names if n not in by_name]
            if not title:
                result.errors.append((number, "课程名称 (title) is empty"))
            elif not topic:
                result.errors.append((number, "专题 (topic) is empty"))
            elif not 0 < hours <= 8:
                result.errors.append((number, "课时 must be a number of hours from 0.5 to 8"))
            elif unknown:
                result.errors.append((number, f"not in the teacher pool: {'、'.join(unknown)}"))
            else:
                ids = [i for n in names for i in by_name[n][:1]]
                good.append((title, topic, hours, cell(row, index, "materials"), ids, []))
    except Exception as exc:  # noqa: BLE001
        return ImportResult(errors=[(0, f"cannot read {path.name}: {type(exc).__name__}")])
    result.imported = len(store.add_courses(good))
    return result
