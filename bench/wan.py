"""Upload over an emulated WAN, against the link itself (and today's engine, s3transfer).

    sudo python bench/wan.py [--rates 100mbit,1gbit] [--rtts 10,50,150] [--runs 3]
                             [--window-kib 256] [--part-mib 8] [--loss-per-gib 0]
                             [--today CHECKOUT] [--no-s3transfer] [--relay-streams N,...]

Studios upload over real links, where a connection is held back by its round trip as much as
by the link's rate. Each point of the grid builds one:

- the sink (bench/sink.py, answering MD5 ETags as S3 does) runs in a network namespace of its
  own, behind a veth pair whose both ends are shaped by `tbf` to the point's rate;
- a delay line in this process (`DelayLine`) sits between the clients (on loopback) and the
  sink: every byte waits RTT/2 in each direction, and a connection may hold at most half its
  window in each direction's line, so one connection moves at most WINDOW per RTT, as a TCP
  connection with that window does on a long path (netem is not in this kernel);
- `--relay-streams N` also sends the file as N parallel PUTs by sendfile through the clients'
  own delay line (`relayN`): what N connections of the model's window carry through this relay
  with no API calls and no hashing, the ceiling of a client holding N parts in flight here;
- optionally the line drops connections (`--loss-per-gib`: on average that many resets per GiB
  sent), as flaky paths do.

The anchor is the link: `link` sends the same file as `--link-streams` (4) parallel PUTs by
sendfile, no API calls (bench/clients/sendfile_put.py), through a second delay line of the same
round trip whose window (the point's bandwidth-delay product, twice over) never holds them
back, so it measures what the shaped path (and this relay and sink, on this CPU) carries. Four,
not one: on a loaded machine one connection is held back by the one sink thread hashing it.
teleport-sync runs with its defaults and the sink's part size, on a journal of its own per
point: its first run learns the path's width, the later ones start from it (as a
daemon's later files, or any later `upload`, do). `--today CHECKOUT` also times teleport-sync
from another checkout's `src/` (the engine before a change) on a journal of its own; s3transfer
runs with boto3's defaults (8 MiB parts, 10 threads) unless `--no-s3transfer`. Clients are
interleaved run by run; medians (with min and max), each client's peak RSS, its rate on the
wire (first to last part byte at the sink) and the most part bodies the sink received at once.
Needs root (network namespaces) and iproute2; without them it says so and exits 0. Writes
bench/results/wan.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from common import BENCH, MIB, PYTHON, TELEPORT_SYNC, make_file, save

NS = f"tsw-wan-{os.getpid()}"
HOST, PEER = "10.213.77.1", "10.213.77.2"


def missing() -> str | None:
    """Why this machine cannot run the bench, or None."""
    if os.geteuid() != 0:
        return "needs root for network namespaces (run it with sudo)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` (Debian's iproute2)"
    return None


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@contextmanager
def namespace() -> Iterator[None]:
    sh("ip", "netns", "add", NS)
    try:
        sh("ip", "link", "add", "tswA", "type", "veth", "peer", "name", "tswB")
        sh("ip", "link", "set", "tswB", "netns", NS)
        sh("ip", "addr", "add", f"{HOST}/30", "dev", "tswA")
        sh("ip", "link", "set", "tswA", "up")
        sh("ip", "netns", "exec", NS, "ip", "addr", "add", f"{PEER}/30", "dev", "tswB")
        sh("ip", "netns", "exec", NS, "ip", "link", "set", "tswB", "up")
        sh("ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up")
        yield
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)
        subprocess.run(["ip", "link", "del", "tswA"], capture_output=True)


def shape(rate: str) -> None:
    """Both directions of the veth pair at `rate` (tbf; its queue bounded to ~20 ms)."""
    for prefix in ([], ["ip", "netns", "exec", NS]):
        dev = "tswB" if prefix else "tswA"
        subprocess.run([*prefix, "tc", "qdisc", "del", "dev", dev, "root"], capture_output=True)
        sh(*prefix, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate,
           "burst", "256kb", "latency", "20ms")  # fmt: skip


class DelayLine:
    """A TCP relay on loopback that holds each direction's bytes for `delay` seconds, at most
    `cap` bytes per connection and direction, and may reset connections at random."""

    def __init__(self, upstream: tuple[str, int], delay: float, cap: int, loss: float) -> None:
        self.upstream, self.delay, self.cap = upstream, delay, cap
        self.loss = loss  # probability that a chunk of 64 KiB is the last of its connection
        self.port = 0
        self.resets = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> DelayLine:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=1024)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        held = [0]
        room = asyncio.Condition()

        async def deliver() -> None:
            while True:
                due, chunk = await line.get()
                if not chunk:
                    break
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                writer.write(chunk)
                await writer.drain()
                async with room:
                    held[0] -= len(chunk)
                    room.notify_all()
            writer.close()

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                async with room:
                    await room.wait_for(lambda: held[0] < self.cap)
                chunk = await reader.read(min(65536, self.cap))
                if not chunk:
                    break
                if self.loss and random.random() < self.loss:
                    self.resets += 1
                    writer.transport.abort()
                    break
                async with room:
                    held[0] += len(chunk)
                await line.put((time.monotonic() + self.delay, chunk))
        finally:
            await line.put((0.0, b""))
            await asyncio.gather(sender, return_exceptions=True)


@contextmanager
def sink_behind(line_port: int, part: int) -> Iterator[int]:
    """The sink in the namespace; the URLs it hands out point at the delay line."""
    argv = ["ip", "netns", "exec", NS, PYTHON, str(BENCH / "sink.py"), "--host", PEER,
            "--port", "0", "--chunk-size", str(part), "--md5-etags",
            "--public", f"http://127.0.0.1:{line_port}"]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    port = int(process.stdout.readline().split()[-1])
    try:
        yield port
    finally:
        process.terminate()
        process.wait()


@dataclass
class Run:
    seconds: float
    peak_rss_mib: float
    wire_seconds: float | None  # first part byte to last, as the sink saw them
    widest: int  # the most parts (PUT bodies) the sink was receiving at once


def sink_log(sink_port: int) -> list[dict]:
    with urllib.request.urlopen(f"http://{PEER}:{sink_port}/_sink/log", timeout=30) as answer:
        return json.load(answer)


def widest_overlap(bodies: list[dict]) -> int:
    """The most bodies in flight at once: a sweep over their first and last bytes."""
    edges = sorted([(b["first"], 1) for b in bodies] + [(b["last"], -1) for b in bodies])
    widest = now = 0
    for _, step in edges:
        now += step
        widest = max(widest, now)
    return widest


def timed(argv: list[str], sink_port: int, env: dict[str, str] | None = None) -> Run:
    before = len(sink_log(sink_port))
    started = time.perf_counter()
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}
    )
    # The client's own peak RSS, sampled from /proc: wait4's ru_maxrss keeps the high-water
    # mark of this process (the relay's buffers) across the fork and exec.
    peak_kib = 0
    while process.poll() is None:
        peak_kib = max(peak_kib, high_water_kib(process.pid))
        time.sleep(0.1)
    elapsed = time.perf_counter() - started
    status = process.returncode
    if status != 0:
        assert process.stderr is not None
        raise RuntimeError(f"{argv[:4]} failed: {process.stderr.read().decode()[-1500:]}")
    bodies = [b for b in sink_log(sink_port)[before:] if b["first"]]
    wire = max(b["last"] for b in bodies) - min(b["first"] for b in bodies) if bodies else None
    return Run(elapsed, peak_kib / 1024, wire, widest_overlap(bodies))


def high_water_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass  # it just ended
    return 0


def bytes_per_second(rate: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([kmg]?)bit", rate.lower()).groups()  # type: ignore[union-attr]
    return float(number) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[unit] / 8


def point(rate: str, rtt_ms: int, args: argparse.Namespace, data: Path, work: Path) -> dict:
    shape(rate)
    cap = args.window_kib * 1024 // 2  # half the window in each direction's line
    loss = args.loss_per_gib * 65536 / (1 << 30)
    line = DelayLine((PEER, 0), rtt_ms / 2000, cap, loss)
    # The link itself: a few connections whose window (twice the bandwidth-delay product) is
    # never what holds them back, through the same delay line, to the same sink.
    wide = DelayLine((PEER, 0), rtt_ms / 2000, int(bytes_per_second(rate) * rtt_ms / 1000), 0.0)
    with line, wide, sink_behind(line.port, args.part_mib * MIB) as sink_port:
        line.upstream = wide.upstream = (PEER, sink_port)
        url = f"http://127.0.0.1:{line.port}"
        config = work / f"wan-{rate}-{rtt_ms}.toml"
        config.write_text(
            f'[api]\nbase_url = "{url}"\nauth_url = "{url}/oauth2/token"\n'
            'client_id = "bench"\nclient_secret = "bench-secret"\n'
            f'[journal]\npath = "{work / f"j-{rate}-{rtt_ms}.sqlite3"}"\n'
            '[log]\nlevel = "WARNING"\n[preflight]\nenabled = false\n'
        )
        config.chmod(0o600)
        upload = [*TELEPORT_SYNC, "--config", str(config), "upload", "--force", str(data)]
        clients: dict[str, tuple[list[str], dict[str, str]]] = {
            LINK: ([PYTHON, str(BENCH / "clients" / "sendfile_put.py"),
                    f"http://127.0.0.1:{wide.port}", str(data), str(args.link_streams)], {}),
            OURS: (upload, {}),
        }  # fmt: skip
        for streams in args.relay_streams:
            # What this many window-limited connections carry through the same delay line as
            # the clients, with no API calls and no hashing: the relay's own ceiling at that
            # width (on a loaded CPU it, not the link, can be what holds a wide window back).
            clients[f"relay{streams}"] = ([PYTHON, str(BENCH / "clients" / "sendfile_put.py"),
                                           url, str(data), str(streams)], {})  # fmt: skip
        if args.today:
            # A journal of its own: on one journal each engine started from the width the other
            # learned, and "before" borrowed this engine's (or the other way round).
            own = {"TELEPORT_SYNC_JOURNAL__PATH": str(work / f"j-today-{rate}-{rtt_ms}.sqlite3")}
            clients[TODAY] = (upload, {"PYTHONPATH": str(Path(args.today) / "src"), **own})
        for variant in args.variant:  # NAME:VAR=VALUE,...: teleport-sync with other settings
            name, _, settings = variant.partition(":")
            clients[name] = (upload, dict(item.split("=", 1) for item in settings.split(",")))
        if args.s3transfer:
            clients[S3T] = ([PYTHON, str(BENCH / "clients" / "s3transfer_upload.py"),
                             url, str(data), "0", "0", "defaults"], {})  # fmt: skip
        runs: dict[str, list[Run]] = {name: [] for name in clients}
        for _ in range(args.runs):
            for name, (argv, env) in clients.items():
                runs[name].append(timed(argv, sink_port, env))
        size_mib = data.stat().st_size / MIB
        rates = {n: sorted(size_mib / r.seconds for r in rs) for n, rs in runs.items()}
        link = statistics.median(rates[LINK])
        return {
            "rate": rate,
            "rtt_ms": rtt_ms,
            "size_mib": size_mib,
            "clients": {
                name: {
                    "mib_per_s": round(statistics.median(rates[name]), 1),
                    "mib_per_s_min_max": [round(rates[name][0], 1), round(rates[name][-1], 1)],
                    # In run order: teleport-sync's first run on a point learns the path's
                    # width (journaled); the later ones start from it.
                    "each_run": [round(size_mib / r.seconds, 1) for r in rs],
                    "of_link": round(statistics.median(rates[name]) / link, 3),
                    "wire_mib_per_s": round(
                        size_mib / statistics.median(r.wire_seconds or r.seconds for r in rs), 1
                    ),
                    "peak_rss_mib": round(max(r.peak_rss_mib for r in rs), 1),
                    "widest_in_flight": max(r.widest for r in rs),
                }
                for name, rs in runs.items()
            },
            "resets": line.resets,
        }


LINK, OURS, TODAY, S3T = "link", "upload", "today", "s3transfer"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="100mbit,1gbit")
    parser.add_argument("--rtts", default="10,50,150", help="round-trip times in ms")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--window-kib", type=int, default=256, help="one connection's window")
    parser.add_argument("--part-mib", type=int, default=8, help="the sink's part size")
    parser.add_argument("--size-mib", default="100mbit:128,1gbit:1024", help="file size per rate")
    parser.add_argument("--loss-per-gib", type=float, default=0.0)
    parser.add_argument(
        "--relay-streams",
        type=lambda text: [int(n) for n in text.split(",") if n],
        default=[],
        metavar="N,...",
        help="also time N window-limited sendfile PUTs through the clients' delay line",
    )
    parser.add_argument(
        "--link-streams", type=int, default=4, help="PUTs in parallel that measure the link"
    )
    parser.add_argument(
        "--today", metavar="CHECKOUT", help="also time teleport-sync from this checkout (its src/)"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:VAR=VALUE",
        help="also time teleport-sync with these environment settings, e.g. "
        "cap32:TELEPORT_SYNC_UPLOAD__MAX_PARTS_IN_FLIGHT=32",
    )
    parser.add_argument(
        "--no-s3transfer", dest="s3transfer", action="store_false", help="leave s3transfer out"
    )
    args = parser.parse_args()
    why = missing()
    if why:
        print(f"skipped: {why}")
        return
    sizes = dict(item.split(":") for item in args.size_mib.split(","))
    rows = []
    with tempfile.TemporaryDirectory() as tmp, namespace():
        work = Path(tmp)
        for rate in args.rates.split(","):
            size = int(sizes.get(rate, 256)) * MIB
            data = make_file(work / f"wan-{rate}.mp4", size)
            for rtt in (int(r) for r in args.rtts.split(",")):
                row = point(rate, rtt, args, data, work)
                rows.append(row)
                for name, c in row["clients"].items():
                    low, high = c["mib_per_s_min_max"]
                    print(
                        f"{rate:>8} {rtt:>4} ms  {name:<10} {c['mib_per_s']:>6} MiB/s "
                        f"({low}-{high})  {c['of_link']:>5.0%} of link  "
                        f"wire {c['wire_mib_per_s']:>6}  RSS {c['peak_rss_mib']:>5} MiB  "
                        f"widest {c['widest_in_flight']:>3}  runs {c['each_run']}",
                        flush=True,
                    )
                print(f"{rate:>8} {rtt:>4} ms  resets {row['resets']}", flush=True)
    print("wrote", save("wan", {"window_kib": args.window_kib, "part_mib": args.part_mib,
                               "loss_per_gib": args.loss_per_gib, "today": args.today,
                               "runs": args.runs, "rows": rows}))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
