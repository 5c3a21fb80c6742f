"""Optional (--profile): py-spy samples one gateway worker during a measured run
and the busiest functions are written beside the run's other files. Needs
`py-spy` on PATH (it is not a dependency of the project)."""

from __future__ import annotations

import collections
import shutil
import subprocess
from pathlib import Path


def available() -> bool:
    return shutil.which("py-spy") is not None


def start(pid: int, seconds: int, raw: Path) -> subprocess.Popen[bytes]:
    """Samples `pid` for `seconds` (100 Hz, without stopping it) into `raw`."""
    return subprocess.Popen(
        ["py-spy", "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "100",
         "--nonblocking", "--format", "raw", "--output", str(raw)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize(raw: Path, out: Path, top: int = 25) -> None:
    """Self and inclusive shares of the sampled frames, busiest first."""
    if not raw.exists():
        return
    total = 0
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [f"{total} samples of one gateway worker", "", "self:"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    out.write_text("\n".join(lines) + "\n")
