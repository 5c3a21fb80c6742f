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


# Where a request's time goes: each sample is charged to the deepest frame that
# matches one of these (first match in this order), else to "other".
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("access log", ("logging/", "access_line")),
    ("JWT", ("jwt_auth.py", "jwt/")),
    ("sending the script", ("client_cursor.py:78", "_execute_send")),
    ("building the script", ("psycopg/_queries.py", "psycopg/sql.py", "adapt", "_convert_query",
                             "ClientCursorMixin")),
    ("decoding the result", ("_select_current_result", "psycopg/rows.py", "_check_results",
                             "fetchone", "_tx_", "Transformer", "parse_response_headers")),
    ("waiting for PostgreSQL", ("psycopg/waiting.py", "connection_async.py")),
    ("pool hand-off", ("psycopg_pool/",)),
    ("the answer (ASGI send, socket write)", ("RequestResponseCycle.send", "responses.py",
                                              "_complete", "_send")),
    ("HTTP parsing", ("data_received", "on_url", "on_header", "on_message", "protocol.py",
                      "on_response_complete")),
    ("routing", ("routing.py", "_route", "Route.matches", "match")),
    ("middleware and framework", ("starlette/middleware", "observe.py", "_exception_handler",
                                  "starlette/", "cors.py")),
    ("event loop", ("asyncio/", "uvloop", "Runner.run", "asyncio_run")),
    ("the gateway's own code", ("gateway/",)),
)


def categorize(raw: Path) -> dict[str, float]:
    """Share of the samples per CATEGORIES entry (deepest matching frame)."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        counts[_category(stack.split(";"))] += n
    return {name: round(100 * counts[name] / total, 1) for name, _ in
            (*CATEGORIES, ("other", ()))} if total else {}


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, needles in CATEGORIES:
            if any(needle in frame for needle in needles):
                return name
    return "other"


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
    lines = [f"{total} samples of one gateway worker", "", "by category (deepest frame):"]
    lines += [f"{share:5.1f}%  {name}" for name, share in categorize(raw).items()]
    lines += ["", "self:"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    out.write_text("\n".join(lines) + "\n")
