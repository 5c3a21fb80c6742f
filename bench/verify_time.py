"""How long `python -m gateway verify` takes on the bench's data (bench/load.py) at
each size: `scripts/devdb run .venv/bin/python -m bench.verify_time [10k,1M]`.
Prints the load time, then three runs of the check (seconds) and what it reports
(the bench's rows are loaded by SQL, not through the api functions, so some
invariants are reported broken there: their counts are printed too)."""

from __future__ import annotations

import os
import sys
import time

from gateway.tools.verify import check

from . import load
from .layout import SIZES


def main() -> int:
    server = os.environ["DATABASE_URL"]
    wanted = (sys.argv[1] if len(sys.argv) > 1 else "10k,1M").split(",")
    for size in (s for s in SIZES if s.label in wanted):
        url = load.create_database(server, f"joinery_verify_{size.label.lower()}")
        seconds = load.load(url, size, lambda line: None)
        rows = load.table_rows(url)
        print(f"{size.label}: loaded in {seconds:.1f} s; {rows}", flush=True)
        for run in range(3):
            start = time.monotonic()
            invariants, _ = check(url, 600_000, 8)
            took = time.monotonic() - start
            broken = {i.name: i.broken for i in invariants if i.broken}
            print(f"{size.label}: verify run {run + 1}: {took:.2f} s; broken: {broken}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
