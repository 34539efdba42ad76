"""Upload over an emulated WAN: teleport-sync against s3transfer as boto3 ships it.

    sudo python bench/wan.py [--rates 100mbit,1gbit] [--rtts 10,50,150] [--runs 2]
                             [--window-kib 256] [--part-mib 8] [--loss-per-gib 0]

Studios upload over real links, where a connection is held back by its round trip as much as
by the link's rate. Each point of the grid builds one:

- the sink (bench/sink.py, answering MD5 ETags as S3 does) runs in a network namespace of its
  own, behind a veth pair whose both ends are shaped by `tbf` to the point's rate;
- a delay line in this process (`DelayLine`) sits between the clients (on loopback) and the
  sink: every byte waits RTT/2 in each direction, and a connection may hold at most half its
  window in each direction's line, so one connection moves at most WINDOW per RTT, as a TCP
  connection with that window does on a long path (netem is not in this kernel);
- optionally the line drops connections (`--loss-per-gib`: on average that many resets per GiB
  sent), as flaky paths do.

teleport-sync runs with its defaults (8 parts in flight to start, widened while throughput
grows, up to 32) and the sink's part size; s3transfer with boto3's defaults (8 MiB parts, 10
threads). Each client runs `--runs` times per point, interleaved; the median is reported, as a
ratio to s3transfer. Needs root (network namespaces) and iproute2; without them it says so and
exits 0. Writes bench/results/wan.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
            asyncio.start_server(self._connection, "127.0.0.1", 0)
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


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed: {result.stderr[-1500:]}")
    return time.perf_counter() - started


def point(rate: str, rtt_ms: int, args: argparse.Namespace, data: Path, work: Path) -> dict:
    shape(rate)
    cap = args.window_kib * 1024 // 2  # half the window in each direction's line
    loss = args.loss_per_gib * 65536 / (1 << 30)
    line = DelayLine((PEER, 0), rtt_ms / 2000, cap, loss)
    with line, sink_behind(line.port, args.part_mib * MIB) as sink_port:
        line.upstream = (PEER, sink_port)
        url = f"http://127.0.0.1:{line.port}"
        config = work / f"wan-{rate}-{rtt_ms}.toml"
        config.write_text(
            f'[api]\nbase_url = "{url}"\nauth_url = "{url}/oauth2/token"\n'
            'client_id = "bench"\nclient_secret = "bench-secret"\n'
            f'[journal]\npath = "{work / f"j-{rate}-{rtt_ms}.sqlite3"}"\n'
            '[log]\nlevel = "WARNING"\n[preflight]\nenabled = false\n'
        )
        config.chmod(0o600)
        clients = {
            "teleport-sync upload": [*TELEPORT_SYNC, "--config", str(config), "upload",
                                     "--force", str(data)],
            "s3transfer (boto3 defaults)": [PYTHON, str(BENCH / "clients" / "s3transfer_upload.py"),
                                            url, str(data), "0", "0", "defaults"],
        }  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in clients}
        for _ in range(args.runs):
            for name, argv in clients.items():
                times[name].append(timed(argv))
        size_mib = data.stat().st_size / MIB
        ours = statistics.median(times["teleport-sync upload"])
        theirs = statistics.median(times["s3transfer (boto3 defaults)"])
        return {
            "rate": rate,
            "rtt_ms": rtt_ms,
            "size_mib": size_mib,
            "seconds": {name: round(statistics.median(t), 2) for name, t in times.items()},
            "mib_per_s": {n: round(size_mib / statistics.median(t), 1) for n, t in times.items()},
            "ratio_to_s3transfer": round(theirs / ours, 2),
            "resets": line.resets,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="100mbit,1gbit")
    parser.add_argument("--rtts", default="10,50,150", help="round-trip times in ms")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--window-kib", type=int, default=256, help="one connection's window")
    parser.add_argument("--part-mib", type=int, default=8, help="the sink's part size")
    parser.add_argument("--size-mib", default="100mbit:128,1gbit:512", help="file size per rate")
    parser.add_argument("--loss-per-gib", type=float, default=0.0)
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
                ours, theirs = row["mib_per_s"].values()
                print(
                    f"{rate:>8} {rtt:>4} ms  teleport-sync {ours:>7} MiB/s  "
                    f"s3transfer {theirs:>7} MiB/s  x{row['ratio_to_s3transfer']}  "
                    f"resets {row['resets']}",
                    flush=True,
                )
    print("wrote", save("wan", {"window_kib": args.window_kib, "part_mib": args.part_mib,
                               "loss_per_gib": args.loss_per_gib, "rows": rows}))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
