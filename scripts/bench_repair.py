#!/usr/bin/env python3
"""What repairs buy a phone at 2% and 8% loss (issue 25): a real headless Chromium phone on
the network test bed (scripts/netbed.py profiles ``loss2`` and ``loss8``: 50 ms each way and
that loss, no rate limit) watches an aiortc lecturer through the relay, three times a profile:

- ``full``: the relay as shipped, answering NACKs from its cache and passing keyframe
  requests (PLI) on to the lecturer; the baseline, measured in the same run;
- ``no-nack``: NACKs ignored, keyframe requests still passed on;
- ``neither``: NACKs ignored and keyframe requests dropped.

The two reduced relays are the shipped one with two feedback handlers replaced at start (a
``sitecustomize`` on the relay's path, made for the run): the product has no such switch.
Per run: share of seconds with video advancing, freeze time a minute, the phone's video
packets lost after repair (getStats' packetsLost over packetsReceived), its NACKs and PLIs,
and the layers the relay chose. Needs root; every process stops by itself.

    sudo .venv/bin/python scripts/bench_repair.py [--seconds 40]

Last line: ``repair: at 2% loss NACK keeps V% video (without it W%); at 8% X% (Y%)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchlib import scratch_dir  # noqa: E402

from tests.netbed import WHY_NOT, made_bed, result_of  # noqa: E402

MODES = ("full", "no-nack", "neither")
SHIM = """import os
from media.peers import _TrackFeedback
if os.environ.get("LR_BENCH_REPAIR") in ("no-nack", "neither"):
    _TrackFeedback.on_nack = lambda self, lost: None
if os.environ.get("LR_BENCH_REPAIR") == "neither":
    _TrackFeedback.on_keyframe_request = lambda self: None
"""


def one(profile: str, mode: str, seconds: float) -> dict:
    tmp = scratch_dir(f"bench-repair-{profile}-{mode}-")
    shim = tmp / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SHIM)
    with made_bed(profile, tmp, f"r{profile[-1]}{mode[:2]}") as bed:
        bed.start_relay(PYTHONPATH=f"{shim}:{ROOT}", LR_BENCH_REPAIR=mode)
        links = bed.session()
        sid = links["session_id"]
        bed.peer(bed.srv, "publish", sid, links["lecturer_token"], seconds + 40)
        return result_of(bed.browser_phone(bed.member_url(sid), seconds), seconds + 90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--profiles", default="loss2,loss8")
    args = parser.parse_args()
    if WHY_NOT:
        sys.exit(f"bench_repair: {WHY_NOT}")
    video: dict[tuple[str, str], float] = {}
    for profile in args.profiles.split(","):
        for mode in MODES:
            got = one(profile, mode, args.seconds)
            video[profile, mode] = got["video_share"]
            lost = got["lost"] / max(1, got["lost"] + got["received"])
            print(
                f"{profile:6} {mode:8} video {got['video_share']:.1%}  "
                f"freezes {got['freeze_s'] * 60 / max(1, got['span_s']):.2f} s/min  "
                f"lost after repair {lost:.2%}  nacks {got['nacks']}  plis {got['plis']}  "
                f"first frame {got['first_frame_s']} s  "
                f"layers {[layer for _, layer in got['layers']]}",
                flush=True,
            )
        base = video[profile, "full"] or 1
        print(
            f"  {profile}: no-nack {video[profile, 'no-nack'] / base:.2f}x full, "
            f"neither {video[profile, 'neither'] / base:.2f}x full",
            flush=True,
        )

    def pick(profile: str, mode: str) -> str:
        value = video.get((profile, mode))
        return "-" if value is None else f"{value:.1%}"

    print(
        f"repair: at 2% loss NACK keeps {pick('loss2', 'full')} video "
        f"(without it {pick('loss2', 'no-nack')}); "
        f"at 8% {pick('loss8', 'full')} ({pick('loss8', 'no-nack')})"
    )


if __name__ == "__main__":
    main()
