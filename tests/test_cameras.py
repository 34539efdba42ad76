"""Reading what Teleport did: camera lists of every known shape, photos matched by name, a
video's frames by the service's numbering, v2 answers kept whole, failure slugs in words."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from teleport_sync.journal import Journal, Source
from teleport_sync.models import (
    FileIdentity,
    TeleportPosed,
    failure_advice,
    failure_sentence,
    failure_slug,
)
from teleport_sync.results.cameras import (
    match_photos,
    match_video,
    posed_of,
    read_cameras,
)
from teleport_sync.results.metadata import MetadataChoice, MetadataRoute, fact_key, read_v2
from teleport_sync.status.phases import PhaseFacts, derive


def test_camera_lists_of_every_known_shape_are_read_and_odd_entries_skipped() -> None:
    wrapped = {"cameras": [{"image_name": "a.jpg", "position": [1, 2, 3], "new_field": {}}]}
    bare = [{"filename": "b.jpg", "camera_center": [0.5, 0, -1]}, "not a camera", {"x": 1}]
    assert [(c.name, c.position) for c in read_cameras(wrapped)] == [("a.jpg", (1.0, 2.0, 3.0))]
    assert [(c.name, c.position) for c in read_cameras(bare)] == [
        ("b.jpg", (0.5, 0.0, -1.0)),
        (None, None),
    ]
    assert read_cameras({"unknown": 1}) == [] and read_cameras("text") == []


def test_photos_are_matched_by_path_name_or_stem_in_any_case() -> None:
    photos = ["set/IMG_1.JPG", "set/IMG_2.png", "set/IMG_3.jpg", "set/IMG_4.jpg"]
    cameras = read_cameras(
        [{"image_name": "set/IMG_1.JPG"}, {"image_name": "img_2.jpg"}, {"image_name": "IMG_4"}]
    )
    posed = match_photos(cameras, photos)
    assert (posed.posed, posed.frames, posed.left_out) == (3, 4, ["set/IMG_3.jpg"])
    assert posed.sentence() == "Teleport posed 3 of 4 photos; left out: IMG_3"
    everything = match_photos(read_cameras([{"image_name": p} for p in photos]), photos)
    assert everything.sentence() == "Teleport posed all 4 photos"


def test_names_that_match_nothing_give_a_count_not_a_list_of_every_photo() -> None:
    cameras = read_cameras([{"image_name": f"frame_{i}.jpg"} for i in range(10)])
    posed = match_photos(cameras, [f"IMG_{i}.jpg" for i in range(12)])
    assert (posed.posed, posed.frames, posed.matched, posed.left_out) == (10, None, False, [])
    assert "cannot be matched" in posed.sentence()


def test_a_long_list_is_cut_in_the_sentence_but_kept_whole() -> None:
    photos = [f"IMG_{i:04d}.jpg" for i in range(100)]
    kept = [{"image_name": p} for i, p in enumerate(photos) if i % 10]
    posed = match_photos(read_cameras(kept), photos)
    assert posed.posed == 90 and len(posed.left_out) == 10
    assert posed.sentence().endswith("IMG_0070 and 2 more")
    assert TeleportPosed.from_json(json.loads(json.dumps(posed.as_json()))) == posed


def test_video_frames_are_named_by_the_gaps_in_the_services_numbering() -> None:
    names = [f"frame_{n:05d}.jpg" for n in range(0, 150, 15) if n not in (45, 90)]
    posed = match_video(read_cameras([{"image_name": n} for n in names]))
    assert (posed.posed, posed.frames) == (8, 10)
    assert posed.left_out == ["frame_00045.jpg", "frame_00090.jpg"]
    assert posed.sentence().startswith("Teleport posed 8 of 10 video frames; left out: frame_00045")
    unnamed = match_video(read_cameras([{"position": [0, 0, 0]}] * 5))
    assert (unnamed.posed, unnamed.frames, unnamed.matched) == (5, None, False)
    assert unnamed.sentence().startswith("Teleport posed 5 video frames; their names cannot")


def test_an_unreadable_camera_list_says_nothing_rather_than_zero_posed(tmp_path: Path) -> None:
    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a.jpg", b"x")
    broken = tmp_path / "cameras.json"
    broken.write_text("{not json")
    assert posed_of(broken, archive, "bulk-images") is None
    assert posed_of(tmp_path / "absent.json", archive, "bulk-images") is None
    broken.write_text(json.dumps([{"image_name": "a.jpg"}]))
    gone = posed_of(broken, tmp_path / "moved-away.zip", "bulk-images")
    assert gone is not None and (gone.posed, gone.matched) == (1, False)


def test_v2_answers_keep_unknown_fields_without_queries_and_read_sizes_when_given() -> None:
    answer = read_v2(
        {
            "model_url": "https://cdn.example/m.ply?X-Amz-Signature=abc",
            "cameras_url": "https://cdn.example/c.json?sig=1",
            "initial_camera": {"position": [0, 1, 2]},
            "telemetry": ["https://cdn.example/t.json?token=s3cr3t"],
        }
    )
    assert answer.models is not None and answer.models[0].size is None
    assert answer.cameras_url == "https://cdn.example/c.json?sig=1"  # fetched with its query
    text = json.dumps(answer.kept)
    assert "Signature" not in text and "s3cr3t" not in text and "sig=1" not in text
    assert answer.kept["initial_camera"] == {"position": [0, 1, 2]}
    chunks = read_v2({"model_urls": ["https://c/0.bin", "https://c/1.bin"], "model_sizes": [3, 4]})
    assert [(m.url, m.size) for m in chunks.models or []] == [
        ("https://c/0.bin", 3),
        ("https://c/1.bin", 4),
    ]
    assert read_v2({"models": [{"url": "u", "size": 1}]}).models is None  # v1's shapes


def test_the_remembered_v1_lasts_a_week_per_account(tmp_path: Path) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with Journal(tmp_path / "j.sqlite3") as journal:
        route = MetadataRoute("https://api a", MetadataChoice("auto"), journal, lambda: now)
        other = MetadataRoute("https://api b", MetadataChoice("auto"), journal, lambda: now)
        assert route.ask_v2()
        route.learn("v1")
        assert not route.ask_v2() and other.ask_v2()  # per account
        later = MetadataRoute(
            "https://api a", MetadataChoice("auto"), journal, lambda: now + timedelta(days=8)
        )
        assert later.ask_v2()
        journal.set_fact(fact_key("https://api a"), "garbage")
        assert route.ask_v2()  # a fact it cannot read is no fact
        assert MetadataRoute("x", MetadataChoice("v2")).ask_v2()
        assert not MetadataRoute("x", MetadataChoice("v1")).ask_v2()


@pytest.mark.parametrize(
    ("reason", "slug", "says"),
    [
        ("NOT_ENOUGH_FRAMES", "NOT_ENOUGH_FRAMES", "too few usable frames; capture more"),
        ("POSE_REFINEMENT_FAILED: poses", "POSE_REFINEMENT_FAILED", "where the camera was"),
        ("DENSIFICATION_FAILED", "DENSIFICATION_FAILED", "could not build the model"),
        ("no-images: the zip archive contains no images", "NO_IMAGES", "holds no photos"),
        ("SOMETHING_NEW: the service's words", "SOMETHING_NEW", "SOMETHING_NEW: the service's"),
        ("the capture failed for a reason", None, "the capture failed for a reason"),
    ],
)
def test_failure_slugs_become_sentences_and_unknown_ones_stay_text(
    reason: str, slug: str | None, says: str
) -> None:
    assert failure_slug(reason) == slug
    assert says in failure_sentence(reason)
    phase, why = derive(PhaseFacts(upload_state="uploaded", capture_state="ERROR", error=reason))
    assert phase == "failed" and says in str(why)
    if slug in (None, "SOMETHING_NEW"):
        assert failure_advice(reason) is None and failure_sentence(reason) == reason


def test_outcomes_put_teleports_answer_beside_the_verdict(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3") as journal:
        ok = journal.register("/in/a.zip", FileIdentity(1, 1, 3, 4, "fa"), "bulk-images", "a")
        bad = journal.register("/in/b.zip", FileIdentity(1, 2, 3, 4, "fb"), "bulk-images", "b")
        busy = journal.register("/in/c.zip", FileIdentity(1, 3, 3, 4, "fc"), "bulk-images", "c")
        for row, eid in ((ok, "e1"), (bad, "e2"), (busy, "e3")):
            journal.record_created(row.id, eid, 8 << 20, 1)
            journal.mark_uploaded(row.id, "UPLOADED")
        journal.record_state(ok.id, "READY", "s1")
        posed = match_photos(read_cameras([{"image_name": "x.jpg"}]), ["x.jpg", "y.jpg"])
        journal.record_teleport_posed(ok.id, posed.as_json(), eid="e1")
        journal.observe_capture(
            bad.id, "ERROR", source=Source.POLL, error="NOT_ENOUGH_FRAMES: too few"
        )
        # Pre-flight said ok of b (its version), warn of an older version of a.
        journal.save_preflight(bad.id, "fb", "ok", {"verdict": "ok", "reasons": []}, [])
        journal.save_preflight(ok.id, "old", "warn", {"verdict": "warn", "reasons": ["x"]}, [])
        found = {o.path: o for o in journal.outcomes()}
        everything = journal.outcomes(ended_only=False)
    assert set(found) == {"/in/a.zip", "/in/b.zip"} and len(everything) == 3
    a, b = found["/in/a.zip"], found["/in/b.zip"]
    assert (a.state, a.posed, a.frames, a.left_out, a.failure_slug) == (
        "READY",
        1,
        2,
        ["y.jpg"],
        None,
    )
    assert (b.state, b.failure_slug, b.posed) == ("FAILED", "NOT_ENOUGH_FRAMES", None)
    assert b.preflight_verdict == "ok" and b.preflight_report == {"verdict": "ok", "reasons": []}
    assert a.preflight_verdict is None  # another version's verdict is not this one's
    assert a.ended_at is not None
