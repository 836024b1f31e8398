"""Teacher pool and course library imports from CSV or XLSX: good rows in, bad rows named."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from server.programme.store import ProgrammeStore
from server.tables import ImportResult, RowError, import_file

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
    def parse_row(get: Callable[[str], str]) -> tuple:
        name, org = get("name"), get("organisation")
        tier = TIERS.get(get("tier").lower())
        school = _school(store, get("school"))
        if not name:
            raise RowError("姓名 (name) is empty")
        if not org:
            raise RowError("单位 (organisation) is empty")
        if tier is None:
            raise RowError(f"层级 must be 市级 or 乡镇: {get('tier')!r}")
        if school is None:
            raise RowError(f"unknown school {get('school')!r}")
        tags = tuple(t.strip() for t in SPLIT.split(get("tags")) if t.strip())
        return (name, org, tier, school, tags, get("contact"))

    return import_file(
        path,
        TEACHER_HEADERS,
        ("name", "organisation", "tier", "school"),
        parse_row,
        lambda good: len(store.add_teachers(good)),
    )


def import_courses(store: ProgrammeStore, path: Path) -> ImportResult:
    by_name: dict[str, list[int]] = {}
    for t in store.teachers():
        by_name.setdefault(t.name, []).append(t.id)

    def parse_row(get: Callable[[str], str]) -> tuple:
        title, topic = get("title"), get("topic")
        try:
            hours = float(get("class_hours"))
        except ValueError:
            hours = -1
        names = [n.strip() for n in SPLIT.split(get("teachers")) if n.strip()]
        unknown = [n for n in names if n not in by_name]
        if not title:
            raise RowError("课程名称 (title) is empty")
        if not topic:
            raise RowError("专题 (topic) is empty")
        if not 0 < hours <= 8:
            raise RowError("课时 must be a number of hours from 0.5 to 8")
        if unknown:
            raise RowError(f"not in the teacher pool: {'、'.join(unknown)}")
        ids = [by_name[n][0] for n in names]
        return (title, topic, hours, get("materials"), ids, [])

    return import_file(
        path,
        COURSE_HEADERS,
        ("title", "topic", "class_hours"),
        parse_row,
        lambda good: len(store.add_courses(good)),
    )
