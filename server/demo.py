"""Demo data for a newcomer: the county's schools, a teacher pool, a course library, a roster,
an issued task and one lecture ready to publish. Made once; later runs reuse it."""

from __future__ import annotations

import json
import random
from pathlib import Path

from server.config import Config
from server.lectures.links import session_links
from server.programme.store import ProgrammeStore, school_id
from server.store import TOWNSHIPS, Classroom, Member, Store

TEACHERS = [
    ("向明", "利川市委党校", "city", "city", ("党史", "理论学习")),
    ("冉玉兰", "利川市委党校", "city", "city", ("党章党规", "廉政教育")),
    ("牟大江", "利川市委组织部", "city", "city", ("组织建设",)),
    ("谭芳", "团堡镇党校", "township", school_id(8), ("乡村振兴", "茶产业")),
    ("黄德才", "谋道镇党校", "township", school_id(10), ("乡村振兴", "基层治理")),
    ("覃春燕", "忠路镇党校", "township", school_id(12), ("法治", "调解")),
    ("向东", "柏杨坝镇党校", "township", school_id(9), ("生态保护",)),
    ("张国华", "都亭街道党校", "township", school_id(0), ("社区治理", "党建")),
]
COURSES = [
    (
        "学习贯彻党的二十届四中全会精神",
        "理论学习",
        2,
        [0],
        [
            {
                "question": "党的二十届四中全会于哪一年召开？",
                "options": ["2024年", "2025年"],
                "answer": 1,
            },
        ],
    ),
    ("中国共产党纪律处分条例解读", "党章党规", 1.5, [1], []),
    ("基层党组织建设实务", "组织建设", 1, [2], []),
    ("茶产业与乡村振兴", "乡村振兴", 1, [3], []),
    ("山区基层治理的谋道经验", "基层治理", 1, [4], []),
    ("农村矛盾纠纷调解与法治", "法治", 1, [5], []),
    ("长江上游生态保护", "生态保护", 1, [6], []),
    ("城市社区党建引领", "党建", 1, [7], []),
]
SURNAMES = "向冉牟谭黄覃张李王刘陈杨周吴郑"
GIVEN = "明华芳强丽军英平秀兰春燕国红德才玉江东海"
CATEGORIES = ("mobile", "elderly", "home-bound", "other")


def seed(config: Config, members_per_township: int = 20) -> dict:
    """Create the demo once (data/demo.json remembers it) and return its links."""
    marker = config.data_dir / "demo.json"
    store = Store(config.store_path)
    programme = ProgrammeStore(config.store_path)
    try:
        from server.auth import signer_for

        signer = signer_for(config.secret, config.data_dir)
        if marker.exists():
            sid = json.loads(marker.read_text(encoding="utf-8"))["session_id"]
            session = store.get_session(sid)
        else:
            ids = programme.add_teachers([(*t, "") for t in TEACHERS])
            programme.add_courses(
                [
                    (t, topic, h, "", [ids[i] for i in who], quiz)
                    for t, topic, h, who, quiz in COURSES
                ]
            )
            rng = random.Random(2026)
            members = []
            for ti, township in enumerate(TOWNSHIPS):
                for k in range(members_per_township):
                    name = rng.choice(SURNAMES) + "".join(rng.sample(GIVEN, 2))
                    phone = f"13{rng.randrange(100000000, 999999999)}"
                    members.append(
                        Member(
                            f"LC{ti + 1:02d}{k + 1:04d}", name, township, phone, CATEGORIES[k % 4]
                        )
                    )
            store.upsert_members(members)
            store.upsert_classrooms(demo_classrooms())
            programme.add_task(
                "冬春训：学习贯彻全会精神",
                2,
                "直播",
                list(TOWNSHIPS),
                list(CATEGORIES),
                "2026-12-01",
                "2027-02-28",
            )
            session = store.create_session(
                "学习贯彻党的二十届四中全会精神（示范课）", store.classrooms()
            )
        links = session_links(config, signer, session)
        links["admin_token"] = signer.issue("admin", None, "组织部", config.token_ttl_s)
        links["school_token"] = signer.issue("school", None, school_id(8), config.token_ttl_s)
        links["member_example"] = store.members(TOWNSHIPS[8])[0].member_id
        links["member_token"] = signer.issue(
            "member", session.id, links["member_example"], config.token_ttl_s
        )
        marker.write_text(json.dumps({"session_id": session.id}), encoding="utf-8")
        return links
    finally:
        programme.close()
        store.close()


# Two village teaching points (教学点) a township, and five education bases, for the demo.
VILLAGES = (
    "龙桥", "青龙", "白鹤", "长坪", "水井", "花园", "新华", "红岩", "石龙", "柏杨",
    "鱼泉", "金龙", "马鞍", "双河", "清水", "大兴", "太平", "龙潭", "观音", "三元",
    "向阳", "黄泥", "茶园", "高峰", "兴隆", "白杨", "齐心", "梨树", "新场", "凉桥",
)  # fmt: skip
BASES = (0, 5, 8, 10, 12)  # townships (by index) with a party-education base


def demo_classrooms() -> list[Classroom]:
    out = []
    for ti, township in enumerate(TOWNSHIPS):
        for k in range(2):
            village = VILLAGES[ti * 2 + k]
            out.append(
                Classroom(f"p{ti + 1:02d}{k + 1}", f"{village}村教学点", "point", township, 40)
            )
        if ti in BASES:
            out.append(Classroom(f"b{ti + 1:02d}", f"{township}党员教育基地", "base", township, 80))
    return out


def print_links(links: dict, base: str) -> None:
    q = lambda t: f"token={t}"  # noqa: E731
    print()
    print("=== 利川市委党校 · 远程直播培训 (Lecture Relay) ===")
    print(f"示范讲座: {links['title']}  (会话 {links['session_id']})")
    print(f"  主讲人页面 (lecturer): {links['urls']['lecturer']}")
    print(f"  手机观看页 (watch, open link): {links['urls']['watch']}")
    print(
        f"  党员个人链接 ({links['member_example']}): "
        f"{base}/watch?session={links['session_id']}&{q(links['member_token'])}"
    )
    print(f"  乡镇教室页 (room): {links['urls']['room_join']}  教室码:")
    for r in links["rooms"]:
        place = r["name"] if r["kind"] == "school" else f"  {r['name']}"
        print(f"      {place:<10} {r['code']}")
    print(f"  组织部管理 (admin):     {base}/admin?{q(links['admin_token'])}")
    print(f"  培训计划 (programme):   {base}/programme?{q(links['admin_token'])}")
    print(f"  团堡镇党校 (school):    {base}/school?{q(links['school_token'])}")
    print(
        f"  考勤审计 (audit):       {base}/audit?session={links['session_id']}&"
        f"{q(links['admin_token'])}"
    )
    print(f"  OBS (WHIP): {links['urls']['whip']}  Bearer {links['lecturer_token']}")
    print(f"  指标 (metrics): {base}/metrics    API: {base}/api/openapi.json")
    print()


__all__ = ["Path", "print_links", "seed"]
