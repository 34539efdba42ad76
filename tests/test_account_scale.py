"""A year-old account: following a station's captures costs what the station uploads, not what
the account holds. The daemon against the emulator holding 20,000 captures of others."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.timestamps import parse_utc

from .helpers import make_zip, wait_for
from .test_daemon import Running, all_ready, rows, settings_for

OTHERS = 20_000
FULL_WALK = OTHERS // 100 + 1  # pages of 100, and the short one that ends it
POLL_SECONDS = 2.0
PROCESSING_SECONDS = 3.0


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(
        seed=32, processing_delay_seconds=PROCESSING_SECONDS, others_captures=OTHERS
    )


def test_three_captures_followed_on_a_year_old_account_cost_a_page_a_poll(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    settings = settings_for(
        emulator, tmp_path, poll={"interval_seconds": POLL_SECONDS, "full_walk_seconds": 3600}
    )
    inbox = settings.watch.paths[0]
    names = {"a.zip", "b.zip", "c.zip"}
    with Running(settings) as running:
        before = emulator.stats.listings
        for name in names:
            make_zip(inbox / name)
        wait_for(all_ready(settings, names), 90, "three READY captures")
        polls = running.daemon.poller.polls
        listed = emulator.stats.listings - before

        # A handful of pages per poll (all three are on the first page), never a walk of the
        # 20,000 others' captures; before this, each poll walked all 201 pages.
        assert polls >= 1
        assert listed <= 2 * polls + 4, (listed, polls)
        assert listed < FULL_WALK

        # READY was seen at the first poll after the server reached it.
        for name, row in rows(settings).items():
            capture = emulator.backend.captures[str(row["eid"])]
            assert capture.uploaded is not None
            ready_at = capture.uploaded + timedelta(seconds=PROCESSING_SECONDS)
            [seen] = [h for h in row["state_history"] if h["state"] == "READY"]  # type: ignore[union-attr]
            late = (parse_utc(seen["observed_at"]) - ready_at).total_seconds()
            assert late <= POLL_SECONDS * 1.15 + 1.5, (name, late)

        # A capture deleted from the account while it processes is noticed and said, at the
        # cost of one full walk in the period, not one at every poll.
        emulator.config.processing_delay_seconds = 3600.0
        make_zip(inbox / "deleted.zip")
        wait_for(
            lambda: rows(settings).get("deleted.zip", {}).get("upload_state") == "uploaded",
            60,
            "the fourth upload",
        )
        eid = str(rows(settings)["deleted.zip"]["eid"])
        emulator.backend.delete(eid)
        wait_for(
            lambda: rows(settings)["deleted.zip"]["unlisted_confirmed_at"] is not None,
            60,
            "the deletion said in status",
        )
        said = rows(settings)["deleted.zip"]
        assert said["phase"] == "processing"
        assert "not in the account's listing" in str(said["reason"]), said["reason"]
        polls, before = running.daemon.poller.polls, emulator.stats.listings
        wait_for(lambda: running.daemon.poller.polls >= polls + 3, 60, "three more polls")
        polls_after = running.daemon.poller.polls - polls
        listed_after = emulator.stats.listings - before
        # Each poll stops at the floor (a page or two); no second full walk within the hour.
        assert listed_after <= 3 * polls_after, (listed_after, polls_after)
    assert emulator.stats.listings < 3 * FULL_WALK


def test_captures_list_limit_stops_the_walk_at_the_page_holding_the_last(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    import json

    from .conftest import write_config
    from .test_cli import run_cli

    config = write_config(tmp_path / "config.toml", emulator)
    before = emulator.stats.listings
    listed = run_cli("--config", str(config), "captures", "list", "--json", "--limit", "150")
    assert listed.returncode == 0, listed.stderr
    captures = json.loads(listed.stdout)
    assert len(captures) == 150 and len({c["eid"] for c in captures}) == 150
    assert emulator.stats.listings - before == 2  # two pages of 100, not the 201 of a walk
    refused = run_cli("--config", str(config), "captures", "list", "--limit", "0")
    assert refused.returncode == 2 and "--limit" in refused.stderr
