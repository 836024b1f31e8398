#!/usr/bin/env python3
"""Phones on impaired links (issue 25): per profile of scripts/netbed.py, a real headless
Chromium phone watches an aiortc lecturer through the relay for ``--seconds``, from inside the
phone's network namespace, the relay in the server's. The clean link is the baseline, measured
in the same run. Needs root (network namespaces); every process stops by itself.

    sudo .venv/bin/python scripts/bench_network.py [--seconds 60] [--profiles 4g,weak,...]

Per profile (``weak-recovers``: the weak link, clean from half-way): share of seconds with
video advancing and with at least sound, freeze time a minute (getStats'
totalFreezesDuration), time to first frame from opening the page, recovery after a
hand-over, how soon the picture moved again once the link recovered, and the member's
credited seconds against what the page played (up to its last heartbeat the relay answered:
the record can vouch for no more). Last line:
    network: 4g V% video, weak A% sound, udp-blocked first frame F s, handover R s,
    weak picture back B s, attendance error E%   (on one line)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchlib import scratch_dir  # noqa: E402

from tests.netbed import WHY_NOT, made_bed, result_of  # noqa: E402

TURN_SECRET = "bench-network-turn"
PROFILES = ("clean", "4g", "weak", "weak-recovers", "udp-blocked", "handover")
RECOVERS = "weak-recovers"  # the weak link, clean from half-way: how soon the picture is back


def one(profile: str, seconds: float, handover_at: float) -> dict:
    bed_profile = "weak" if profile == RECOVERS else profile
    with made_bed(bed_profile, scratch_dir(f"bench-net-{profile}-"), f"b{profile[:6]}") as bed:
        if profile == "udp-blocked":
            url = bed.start_turn(TURN_SECRET)
            bed.start_relay(LR_ICE_SERVERS=url, LR_TURN_SECRET=TURN_SECRET)
        else:
            bed.start_relay()
        links = bed.session()
        sid = links["session_id"]
        bed.peer(bed.srv, "publish", sid, links["lecturer_token"], seconds + 40)
        at = handover_at if profile == "handover" else None
        trace = os.environ.get("LR_BENCH_TRACE", "")  # a folder: each phone's samples there
        trace = trace and str(Path(trace) / f"{profile}.json")
        recover_at = seconds / 2 if profile == RECOVERS else None
        phone = bed.browser_phone(bed.member_url(sid), seconds, at, trace, recover_at)
        return result_of(phone, seconds + 90)


def error_of(got: dict) -> float | None:
    played, credited = got.get("played_to_last_beat_s"), got.get("credited_s")
    if not played or credited is None:
        return None
    return (credited - played) / played


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--handover-at", type=float, default=20)
    parser.add_argument("--profiles", default=",".join(PROFILES))
    args = parser.parse_args()
    if WHY_NOT:
        sys.exit(f"bench_network: {WHY_NOT}")
    results = {}
    for profile in args.profiles.split(","):
        got = results[profile] = one(profile, args.seconds, args.handover_at)
        err = error_of(got)
        print(
            f"{profile:12} video {got['video_share']:.1%}  sound {got['sound_share']:.1%}  "
            f"freezes {got['freeze_s'] * 60 / max(1, got['span_s']):.2f} s/min  "
            f"first frame {got['first_frame_s']} s  recovery {got.get('recovery_s', '-')} s  "
            f"picture back {got.get('video_back_s', '-')} s  "
            f"rejoins {got['rejoins']}  played {got['played_to_last_beat_s']} s  "
            f"credited {got['credited_s']} s  error {'-' if err is None else f'{err:+.1%}'}  "
            f"layers {[layer for _, layer in got['layers']]}",
            flush=True,
        )
    base = results.get("clean")
    if base and base["video_share"]:
        for profile, got in results.items():
            print(f"  {profile}: video {got['video_share'] / base['video_share']:.2f}x clean")
    errors = [e for e in map(error_of, results.values()) if e is not None]
    worst = max(errors, key=abs) if errors else None

    def pick(profile: str, key: str, fmt: str) -> str:
        value = results.get(profile, {}).get(key)
        return "-" if value is None else format(value, fmt)

    print(
        f"network: 4g {pick('4g', 'video_share', '.1%')} video, "
        f"weak {pick('weak', 'sound_share', '.1%')} sound, "
        f"udp-blocked first frame {pick('udp-blocked', 'first_frame_s', '.2f')} s, "
        f"handover {pick('handover', 'recovery_s', '.2f')} s, "
        f"weak picture back {pick(RECOVERS, 'video_back_s', '.2f')} s, "
        f"attendance error {'-' if worst is None else f'{worst:+.1%}'}"
    )


if __name__ == "__main__":
    main()
