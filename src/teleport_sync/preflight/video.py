"""An MP4's frames, sampled evenly and decoded with PyAV (FFmpeg's libraries, no subprocess).

Never the whole video in memory, and rarely the whole video decoded:
1. one pass over the packets (demuxing only: no decoding) notes where the keyframes are;
2. `count` target times are spread evenly over the video; a target near a keyframe (within
   half the spacing of targets) takes that keyframe, which decodes on its own;
3. for the rest, decoding starts at the keyframe before the target and stops at it, skipping
   frames nothing refers to (`skip_frame = NONREF`).
A phone's video (a keyframe every second or two) costs one decoded frame per sample; one with
sparse keyframes costs at most the frames up to each target.

Frames are scaled and turned grey by FFmpeg (swscale) straight to the analysis size, and a
small colour thumbnail is kept per sample (for the worst-frames strip).
"""

from __future__ import annotations

import bisect
import io
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

from ..inputs.frames import video_size
from .frames import FrameMeasure
from .measures import analysis_size, measure

THUMBNAIL_WIDTH = 160
# The budget for decoding between keyframes (`VideoSampler.plan`): 100 Mbit/s of upload, and
# what this project's 2-core machine decodes of 1080p H.264 per second (docs/BENCHMARKS.md).
UPLOAD_BYTES_PER_SECOND = 100e6 / 8
DECODE_FPS_1080P = 250.0
FRAMES_PER_SAMPLE = 15  # half a second of a phone's video


# Frames decoded at once grow with frame threading (each thread holds its own): above 4K UHD,
# slices are decoded in parallel instead, one frame at a time (an 8192x8192 H.264 stream: 715
# MiB of RSS with frame threads, 336 MiB with slices). Over 8K (DCI), frames are not decoded:
# their reference frames alone could pass pre-flight's memory.
FRAME_THREADS_MAX_PIXELS = 3840 * 2160
MAX_PIXELS = 8192 * 4320


class VideoProblem(Exception):
    """The file cannot be read as a video; the message says why."""


@dataclass(frozen=True)
class VideoFacts:
    width: int
    height: int
    fps: float | None
    duration_seconds: float | None
    codec: str
    keyframes: int
    packets: int


@dataclass(frozen=True)
class Sampled:
    measure: FrameMeasure
    seconds: float
    thumbnail: bytes


def frame_name(seconds: float) -> str:
    """A sampled frame's name: where it is in the video (`1:02.50`)."""
    minutes, rest = divmod(max(0.0, seconds), 60)
    return f"{int(minutes)}:{rest:05.2f}"


class VideoSampler:
    """The frames of one video file, sampled (`facts`, then `samples()`)."""

    def __init__(self, path: Path, count: int) -> None:
        # Opening probes the stream by decoding a frame: a size too large is refused first.
        declared = video_size(path)
        if declared is not None:
            _refuse_over(*declared)
        try:
            self.container = av.open(str(path))
        except av.error.FFmpegError as exc:
            raise VideoProblem(f"cannot be read as a video ({exc})") from None
        if not self.container.streams.video:
            self.container.close()
            raise VideoProblem("has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = _threading_for(self.container, self.stream)
        self.count = count
        self.size_bytes = path.stat().st_size
        self.keyframes_only = False
        self.base = self.stream.time_base or Fraction(1, 90000)
        self.packets, self.keys = self._index()
        self.facts = self._facts()

    def close(self) -> None:
        self.container.close()

    def _index(self) -> tuple[list[int], list[int]]:
        """Presentation times of every packet and of the keyframes (sorted), by demuxing."""
        times: list[int] = []
        keys: list[int] = []
        try:
            for packet in self.container.demux(self.stream):
                if packet.size and packet.pts is not None:
                    times.append(packet.pts)
                    if packet.is_keyframe:
                        keys.append(packet.pts)
        except av.error.FFmpegError as exc:
            raise VideoProblem(f"cannot be read past a damaged packet ({exc})") from None
        return sorted(times), sorted(keys)

    def _facts(self) -> VideoFacts:
        rate = self.stream.average_rate or self.stream.guessed_rate
        duration = None
        if len(self.packets) > 1:
            step = (self.packets[-1] - self.packets[0]) / (len(self.packets) - 1)
            duration = float((self.packets[-1] - self.packets[0] + step) * self.base)
        return VideoFacts(
            width=self.stream.codec_context.width,
            height=self.stream.codec_context.height,
            fps=float(rate) if rate else None,
            duration_seconds=duration,
            codec=self.stream.codec_context.name,
            keyframes=len(self.keys),
            packets=len(self.packets),
        )

    def targets(self) -> list[int]:
        """The times (in stream units) to sample: evenly spread, near keyframes taking them."""
        if not self.packets:
            return []
        first, last = self.packets[0], self.packets[-1]
        count = min(self.count, len(self.packets))
        spacing = (last - first) / count if count else 0
        chosen: list[int] = []
        for i in range(count):
            wanted = first + round((i + 0.5) * spacing)
            key = _nearest(self.keys, wanted)
            if key is not None and abs(key - wanted) <= spacing / 2 and key not in chosen:
                wanted = key
            chosen.append(
                self.packets[min(bisect.bisect_left(self.packets, wanted), len(self.packets) - 1)]
            )
        return sorted(set(chosen))

    def plan(self) -> dict[int, list[int]]:
        """The targets grouped by the keyframe decoding starts from (`{keyframe: [times]}`).

        Decoding forward from keyframes is budgeted: at most what decoding would cost in the
        time uploading the file takes at 100 Mbit/s (at `DECODE_FPS_1080P`, scaled by the
        frame's pixels), and never less than `FRAMES_PER_SAMPLE` per sample. A video whose
        keyframes are too sparse for that is judged on its keyframes alone (`keyframes_only`).
        """
        groups: dict[int, list[int]] = {}
        for target in self.targets():
            at = bisect.bisect_right(self.keys, target) - 1
            groups.setdefault(self.keys[at] if at >= 0 else self.packets[0], []).append(target)
        cost = sum(
            bisect.bisect_left(self.packets, times[-1]) - bisect.bisect_left(self.packets, key)
            for key, times in groups.items()
        )
        if cost > self.budget() and len(self.keys) >= 2:
            self.keyframes_only = True
            keys = sorted({k for k in groups} | set(self._spread(self.keys)))
            return {k: [k] for k in keys}
        return groups

    def budget(self) -> float:
        """Frames that may be decoded forward from keyframes (see `plan`)."""
        upload_seconds = self.size_bytes / UPLOAD_BYTES_PER_SECOND
        pixels = max(1, self.facts.width * self.facts.height)
        fps = DECODE_FPS_1080P * (1920 * 1080) / pixels
        return max(FRAMES_PER_SAMPLE * self.count, upload_seconds * fps)

    def _spread(self, values: list[int]) -> list[int]:
        """At most `count` of `values`, evenly spread."""
        if len(values) <= self.count:
            return values
        step = len(values) / self.count
        return [values[int(i * step)] for i in range(self.count)]

    def samples(self) -> Iterator[Sampled]:
        """Each target frame, measured, in time order."""
        index = 0
        for start, wanted in sorted(self.plan().items()):
            for frame in self._decode_group(start, wanted):
                yield self._sampled(frame, index)
                index += 1

    def _decode_group(self, start: int, wanted: list[int]) -> Iterator[av.VideoFrame]:
        """From the keyframe at `start`, the first frame at or after each of `wanted`."""
        codec = self.stream.codec_context
        self.container.seek(start, stream=self.stream, backward=True, any_frame=False)
        codec.flush_buffers()
        codec.skip_frame = "NONREF"
        pending = list(wanted)
        try:
            for packet in self.container.demux(self.stream):
                # Once the packets reach the last target, draining hands out the frames the
                # decoder holds (its threads keep a few) instead of decoding more to push them.
                # An empty packet ends the stream and drains too.
                last = not packet.size or (packet.pts is not None and packet.pts >= pending[-1])
                frames = list(codec.decode(packet if packet.size else None))
                if last and packet.size:
                    frames += codec.decode(None)
                for frame in frames:
                    if pending and frame.pts is not None and frame.pts >= pending[0]:
                        pending.pop(0)
                        yield frame
                if last or not pending:
                    return
        except av.error.FFmpegError:
            return  # a damaged stretch: the frames not found are not judged

    def _sampled(self, frame: av.VideoFrame, index: int) -> Sampled:
        seconds = float((frame.pts or 0) * self.base)
        width, height = analysis_size(frame.width, frame.height)
        grey = Image.fromarray(frame.reformat(width, height, "gray").to_ndarray(), mode="L")
        name = frame_name(seconds)
        judged = measure(grey, index=index, name=name, size=(frame.width, frame.height))
        return Sampled(judged, seconds, _thumbnail(frame))


def _threading_for(container: av.container.InputContainer, stream: av.VideoStream) -> str:
    """FFmpeg's threads for `stream` (the GIL is not held meanwhile), within pre-flight's
    memory; raises VideoProblem (closing `container`) when its frames are too large."""
    width, height = stream.codec_context.width, stream.codec_context.height
    try:
        _refuse_over(width, height)  # the stream's own size, when the boxes said less
    except VideoProblem:
        container.close()
        raise
    return "AUTO" if width * height <= FRAME_THREADS_MAX_PIXELS else "SLICE"


def _refuse_over(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise VideoProblem(
            f"has {width}x{height} frames, larger than pre-flight decodes within its memory "
            "(8192x4320 pixels at most); not judged"
        )


def _nearest(sorted_values: list[int], value: int) -> int | None:
    at = bisect.bisect_left(sorted_values, value)
    near = sorted_values[max(0, at - 1) : at + 1]
    return min(near, key=lambda v: abs(v - value)) if near else None


def _thumbnail(frame: av.VideoFrame) -> bytes:
    height = max(2, round(frame.height * THUMBNAIL_WIDTH / max(frame.width, 1)) // 2 * 2)
    small = frame.reformat(THUMBNAIL_WIDTH, height, "rgb24").to_image()
    out = io.BytesIO()
    small.save(out, "JPEG", quality=75)
    return out.getvalue()
