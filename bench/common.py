"""Shared pieces of the benchmarks: the sink process, configs, timed runs, result files.

Every figure is measured in the same run as its baseline and reported as a ratio.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from teleport_sync.inputs.samples import video_moov

BENCH = Path(__file__).parent
RESULTS = BENCH / "results"
MIB = 1024 * 1024
PYTHON = sys.executable
TELEPORT_SYNC = [PYTHON, "-m", "teleport_sync"]


def _byte_compiled_as_installed() -> None:
    """teleport-sync's modules compiled once, as pip compiles a wheel's at install time.

    boto3 and the other baselines come from site-packages with their bytecode; an editable
    checkout has none, and on a machine that sets PYTHONDONTWRITEBYTECODE (this one does) every
    run would compile each of our modules again (~0.1 s), which no installed copy pays.
    """
    import compileall

    import teleport_sync

    compileall.compile_dir(Path(teleport_sync.__file__).parent, quiet=1)


_byte_compiled_as_installed()


@dataclass
class Sink:
    port: int
    process: subprocess.Popen[str]
    cert: Path | None = None  # set when the sink serves https with a self-signed certificate

    @property
    def url(self) -> str:
        return f"{'https' if self.cert else 'http'}://127.0.0.1:{self.port}"

    def log(self) -> list[dict[str, float]]:
        verify = str(self.cert) if self.cert else True
        return httpx.get(f"{self.url}/_sink/log", verify=verify).json()

    def client_env(self) -> dict[str, str]:
        """Environment that makes every client trust the sink's certificate."""
        if self.cert is None:
            return {}
        cert = str(self.cert)
        return {"SSL_CERT_FILE": cert, "AWS_CA_BUNDLE": cert, "CURL_CA_BUNDLE": cert}


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with the openssl CLI."""
    cert, key = directory / "sink-cert.pem", directory / "sink-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@contextmanager
def sink(
    chunk_size: int = 32 * MIB, tls: tuple[Path, Path] | None = None, *, md5_etags: bool = False
) -> Iterator[Sink]:
    argv = [PYTHON, str(BENCH / "sink.py"), "--port", "0", "--chunk-size", str(chunk_size)]
    if md5_etags:
        argv.append("--md5-etags")
    if tls is not None:
        argv += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    port = int(process.stdout.readline().split()[-1])
    try:
        yield Sink(port, process, tls[0] if tls else None)
    finally:
        process.terminate()
        process.wait()


def write_config(workdir: Path, sink_: Sink, extra: str = "") -> Path:
    path = workdir / "config.toml"
    path.write_text(
        f'[api]\nbase_url = "{sink_.url}"\nauth_url = "{sink_.url}/oauth2/token"\n'
        'client_id = "bench"\nclient_secret = "bench-secret"\n'
        f'[journal]\npath = "{workdir / "journal.sqlite3"}"\n[log]\nlevel = "WARNING"\n'
        # The transfer engine is what is timed here: pre-flight (which judges the pictures
        # once per file version) is measured on real photos and video by bench/preflight.py.
        f"[preflight]\nenabled = false\n{extra}"
    )
    path.chmod(0o600)
    return path


@dataclass
class Run:
    seconds: float
    peak_rss_mib: float
    wire_seconds: float | None  # first body byte to last, as the sink saw them
    cpu_seconds: float = 0.0  # the program's own user + system CPU time


def timed(argv: list[str], sink_: Sink | None = None, env: dict[str, str] | None = None) -> Run:
    """Run a command to completion; wall time, its own peak RSS and CPU, and time on the wire."""
    before = len(sink_.log()) if sink_ else 0
    started = time.perf_counter()
    process = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(sink_.client_env() if sink_ else {}), **(env or {})},
    )
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        assert process.stderr is not None
        raise RuntimeError(f"{argv[:4]} failed: {process.stderr.read().decode()[-2000:]}")
    wire = None
    if sink_:
        bodies = [e for e in sink_.log()[before:] if e["first"]]
        if bodies:
            wire = max(e["last"] for e in bodies) - min(e["first"] for e in bodies)
    return Run(elapsed, usage.ru_maxrss / 1024, wire, usage.ru_utime + usage.ru_stime)


def median_run(runs: list[Run]) -> Run:
    by_time = sorted(runs, key=lambda r: r.seconds)
    mid = by_time[len(by_time) // 2]
    wires = [r.wire_seconds for r in runs if r.wire_seconds]
    return Run(
        statistics.median(r.seconds for r in runs),
        max(r.peak_rss_mib for r in runs),
        statistics.median(wires) if wires else mid.wire_seconds,
        statistics.median(r.cpu_seconds for r in runs),
    )


def machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "curl": (
            shutil.which("curl")
            and subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout.split(
                "\n"
            )[0]
        ),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "max_rss_limit": resource.getrlimit(resource.RLIMIT_AS),
    }


def save(name: str, data: dict[str, object]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=2))
    return path


def make_file(path: Path, size: int, *, sparse: bool = False) -> Path:
    """An MP4 of `size` bytes (`upload` checks the shape: ftyp, then one `mdat` of filler, then
    a moov with a video track): random filler (throughput) or a sparse hole (memory)."""
    ftyp = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    header_size = 16  # a 64-bit box header (size field 1, then the size) fits 4 GiB and over
    filler = size - len(ftyp) - len(video_moov())
    moov = video_moov(data_offset=len(ftyp) + header_size, data_size=filler - header_size)
    if path.exists() and path.stat().st_size == size:
        with path.open("rb") as old:
            old.seek(size - len(moov))
            if old.read() == moov:  # a file made by an older bench without a track is remade
                return path
    header = (1).to_bytes(4, "big") + b"mdat" + filler.to_bytes(8, "big")
    with path.open("wb") as out:
        out.write(ftyp + header)
        left = filler - len(header)
        if sparse:
            out.seek(left, os.SEEK_CUR)
        else:
            block = os.urandom(4 * MIB)
            while left > 0:
                left -= out.write(block[: min(len(block), left)])
        out.write(moov)
    return path
