"""The scale benchmark's rows: each size's figures with their goals, and the growth
between every pair of sizes (which the machine's load moves far less than the figures)."""

from __future__ import annotations

from typing import Any

from bench.report import Row
from gwsync.storage import ops_snapshot

NAME = "scale"
SCRAPE_GOAL_MS = 50.0
TICK_GOAL_MS = 200.0
#: The tick's goal is per this many due syncs.
TICK_GOAL_DUE = 20_000
SHRED_GOAL_MS = 100.0
VERIFY_GOAL_S = 1.0
#: Growth a "flat" figure may show between sizes on this shared machine (sub-millisecond
#: and ~100 ms figures move by this much between two runs at one size).
FLAT = 2.0


def _size(m: dict[str, Any]) -> str:
    return f"{m['accounts']:,} accounts / {m['records']:,} records"


def _seeding(m: dict[str, Any]) -> Row:
    accounts, records = m["seeded"]
    steps = m["seed_steps"]
    return Row(NAME, f"seeding {accounts:,} more accounts / {records:,} more records (binary "
               f"COPY, indexes rebuilt, VACUUM ANALYZE; load {m['load'][0]:.1f}), reaching "
               f"{_size(m)}", f"{m['seed_s']:.0f} s (COPY {steps['copy']:.0f} s, indexes "
               f"{steps['index']:.0f} s, vacuum {steps['vacuum']:.0f} s; "
               f"{records / max(steps['copy'], 1e-9):,.0f} records/s)", "reported")


def _ticks(m: dict[str, Any]) -> list[Row]:
    size, due = _size(m), m["accounts"]
    per_goal = m["tick_ms"] * TICK_GOAL_DUE / due
    whole = Row(NAME, f"one scheduler tick, {due:,} due, {size}", f"{m['tick_ms']:.0f} ms"
                + (f" ({per_goal:.0f} ms per {TICK_GOAL_DUE:,} due)" if due > TICK_GOAL_DUE
                   else ""), f"≤ {TICK_GOAL_MS:g} ms at {TICK_GOAL_DUE // 1000}k due",
                m["tick_ms"] <= TICK_GOAL_MS if due == TICK_GOAL_DUE else None)
    rows = [whole,
            Row(NAME, f"all {due:,} due syncs queued: the tick, then its dispatch jobs back "
                f"to back in one process (what the worker pool shares), {size}",
                f"{m['all_ms']:.0f} ms", "reported"),
            Row(NAME, f"the floor now: one bare UPDATE of the same {due:,} rows (all queued "
                f"÷ floor)", f"{m['floor_ms']:.0f} ms "
                f"(×{m['all_ms'] / max(m['floor_ms'], 1e-9):.1f})", "reported")]
    if m["part_ms"] is not None:
        part = m["part_due"]
        rows.append(Row(NAME, f"one scheduler tick, {part:,} due among {size} "
                        f"(all queued {m['part_all_ms']:.0f} ms ÷ its bare UPDATE: ×"
                        f"{m['part_all_ms'] / max(m['part_floor_ms'], 1e-9):.1f})",
                        f"{m['part_ms']:.0f} ms",
                        f"≤ {TICK_GOAL_MS:g} ms at {TICK_GOAL_DUE // 1000}k due",
                        m["part_ms"] <= TICK_GOAL_MS if part == TICK_GOAL_DUE else None))
    return rows


def rows(m: dict[str, Any]) -> list[Row]:
    """One size's rows: its seeding, a scrape (served and computed), ticks, an erasure."""
    size = _size(m)
    return [
        _seeding(m),
        Row(NAME, f"one scrape as served (snapshot ≤ {ops_snapshot.SERVE_STALE_S:g} s old, the "
            f"next taken in the background), {size}", f"{m['cached_ms']:.2f} ms",
            f"≤ {SCRAPE_GOAL_MS:g} ms", m["cached_ms"] <= SCRAPE_GOAL_MS),
        Row(NAME, f"one ops snapshot computed (uncached: what the background refresh "
            f"costs), {size}", f"{m['scrape_ms']:.1f} ms", "reported"),
        *_ticks(m),
        Row(NAME, f"erasure: request → data key destroyed, {m['noise']:,} unrelated Redis "
            f"keys, {size}", f"{m['shred_ms']:.1f} ms", f"≤ {SHRED_GOAL_MS:g} ms",
            m["shred_ms"] <= SHRED_GOAL_MS),
        Row(NAME, f"erasure: request → verified receipt (all zero: "
            f"{'yes' if m['ok'] else 'NO'}), {size}", f"{m['verified_s']:.2f} s",
            f"≤ {VERIFY_GOAL_S:g} s", m["ok"] and m["verified_s"] <= VERIFY_GOAL_S),
    ]


def growth(small: dict[str, Any], large: dict[str, Any]) -> list[Row]:
    """How each figure grew from `small` to `large`, against the growth it may show."""
    fleet = large["accounts"] / small["accounts"]
    label = f"{small['accounts']:,} → {large['accounts']:,} accounts (×{fleet:g})"

    def ratio(key: str) -> float:
        return float(large[key]) / max(float(small[key]), 1e-9)

    out = [
        Row(NAME, f"growth of a snapshot computed, {label}", f"×{ratio('scrape_ms'):.1f}",
            "flat in records (O(accounts) at most)", ratio("scrape_ms") <= fleet),
        Row(NAME, f"growth of a scrape as served, {label}", f"×{ratio('cached_ms'):.1f}",
            f"flat (≤ ×{FLAT:g})", ratio("cached_ms") <= FLAT),
        Row(NAME, f"growth of a tick, every account due, {label}", f"×{ratio('tick_ms'):.1f}",
            f"O(due): ≤ ×{fleet:g}", ratio("tick_ms") <= fleet),
        Row(NAME, f"growth of an erasure's shred, {label}", f"×{ratio('shred_ms'):.1f}",
            f"flat (≤ ×{FLAT:g})", ratio("shred_ms") <= FLAT),
        Row(NAME, f"growth of an erasure's verify, {label}", f"×{ratio('verified_s'):.1f}",
            f"flat (≤ ×{FLAT:g})", ratio("verified_s") <= FLAT),
    ]
    if large["part_ms"] is not None and large["part_due"] == small["accounts"]:
        grew = large["part_ms"] / max(small["tick_ms"], 1e-9)
        out.insert(3, Row(NAME, f"growth of a tick at {small['accounts']:,} due, {label}",
                          f"×{grew:.1f}", f"flat: O(due), not O(accounts) (≤ ×{FLAT:g})",
                          grew <= FLAT))
    return out
