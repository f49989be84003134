"""Peak memory and time of ``wattline import lp`` on a large line-protocol file (run on demand, not in the suite).

Writes a generated file shaped like ``wattline export --format lp`` output (``--mb`` megabytes, 20 series of 1-s
power values with status fields), then imports it into fresh embedded stores twice, each in its own process:

- reference: the whole file parsed into memory and written (``parse_line_protocol`` + ``write_parsed_lines``, what
  ``wattline import lp`` did before it streamed);
- streamed: ``wattline import lp`` (a checking pass, then a writing pass in chunks of ``--chunk-lines`` lines).

Peak RSS is the child's own (``os.wait4``), so the two runs do not mix. Both stores are compared by value count.

Usage::

    python tests/benchmarks/bench_import_lp.py --mb 200
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
NS = 1_000_000_000
T0 = 1_767_225_600 * NS

REFERENCE = """
import sys
from pathlib import Path
from core.export import parse_line_protocol, write_parsed_lines
from core.storage import open_store
parsed = parse_line_protocol(Path(sys.argv[1]))
assert not parsed.error_count, parsed.errors
with open_store(sys.argv[2]) as store:
    print(write_parsed_lines(parsed, store))
"""


def generate(path: Path, mb: float, series: int = 20) -> int:
    """Write about ``mb`` MB of line protocol; return the number of lines."""
    rng = np.random.default_rng(1)
    lines, size, target = 0, 0, int(mb * 1e6)
    with open(path, "w", encoding="utf-8") as fh:
        step = 0
        while size < target:
            block = []
            power = rng.uniform(0, 250, (1000, series)).round(3)
            for k in range(1000):
                t = T0 + (step + k) * NS
                for s in range(series):
                    status = "2147483648i" if (step + k + s) % 500 == 0 else "0i"
                    block.append(f"electrical,line=l{s % 4},machine=m-{s:03d},site=north "
                                 f"active_power_kw={power[k, s]},wattline_status={status} {t}\n")
            text = "".join(block)
            fh.write(text)
            size += len(text)
            lines += len(block)
            step += 1000
    return lines


def run(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS [MiB], stdout) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024, out.strip()


def count(db: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM points").fetchone()[0] + \
            conn.execute("SELECT coalesce(sum(n), 0) FROM chunks").fetchone()[0]
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=200.0, help="Size of the generated file [MB].")
    parser.add_argument("--chunk-lines", type=int, default=250_000)
    parser.add_argument("--dir", type=Path, default=None, help="Work directory (default: a temporary one).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        lp = work / "big.lp"
        t0 = time.perf_counter()
        n = generate(lp, args.mb)
        print(f"generated {lp.stat().st_size / 1e6:.0f} MB, {n} lines in {time.perf_counter() - t0:.0f} s", flush=True)
        py = sys.executable
        ref_s, ref_mb, _ = run([py, "-c", REFERENCE, str(lp), str(work / "ref.db")])
        print(f"reference (whole file in memory): {ref_s:.0f} s, peak RSS {ref_mb:.0f} MiB", flush=True)
        new_s, new_mb, line = run([py, "-m", "wattline", "import", "lp", str(lp), "--store", str(work / "new.db"),
                                   "--chunk-lines", str(args.chunk_lines)])
        print(f"streamed (wattline import lp, chunks of {args.chunk_lines} lines): {new_s:.0f} s, "
              f"peak RSS {new_mb:.0f} MiB; {line}", flush=True)
        a, b = count(work / "ref.db"), count(work / "new.db")
        assert a == b == n, (a, b, n)
        print(f"both stores hold {n} values; peak RSS ratio streamed/reference {new_mb / ref_mb:.2f}, "
              f"time ratio {new_s / ref_s:.2f}; {platform.python_version()}, {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
