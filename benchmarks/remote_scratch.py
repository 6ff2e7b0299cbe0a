"""Intermediate parts on a loopback XRootD server against a local scratch directory.

    .venv/bin/python -m benchmarks.remote_scratch [--repeat 3] [--dataset DIR]

Counts the medium dataset once, then, alternating in every repetition, plans and runs the same
plan (N = 15, 10 batches, 2 workers) with `execution.scratch` local and with
`execution.scratch: root://127.0.0.1:PORT//scratch` on a server started here (the test suite's
`tests/xrootd_server.py`, Debian's xrootd as user `xrootd`), and with the same server's WebDAV
door (`dav://127.0.0.1:HTTP_PORT/scratch`, XrdHttp). Prints the wall seconds of the read
and write phases as `run` logs them (whole seconds) and of the whole `run`, and checks that
both arms wrote the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BB = ROOT / ".venv" / "bin" / "balanced-batches"
EXAMPLE = ROOT / "examples" / "prod_Phase2_v2"
MEDIUM = ROOT / "bench-data" / "datasets" / "sall-f2-e4000-seed1-zstd"
ARMS = ("local", "root", "dav")  # dav: the server's HTTP door (XrdHttp), WebDAV
PHASE = re.compile(r"(reading inputs|writing batches): \d+ done in (\d+) s")


def bb(*args: object) -> str:
    """Runs balanced-batches; returns its standard error (the log)."""
    done = subprocess.run([str(BB), *map(str, args)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"balanced-batches {' '.join(map(str, args))} failed:\n{done.stderr}")
    return done.stderr


def digest(directory: Path) -> str:
    """sha256 over every output file, in name order."""
    total = hashlib.sha256()
    for path in sorted(directory.glob("batch*.root")):
        total.update(path.read_bytes())
    return total.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dataset", type=Path, default=MEDIUM)
    options = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from xrootd_server import XRootDServer

    server = XRootDServer()
    server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bb-remote-scratch-") as scratch:
            work = Path(scratch)
            counted = work / "counted"
            bb(
                "count", "--workdir", counted, "--prod-campaign", "prod_Phase2_v2",
                "--process-types", EXAMPLE / "process_types.yaml",
                "--pt-abseta-bins", EXAMPLE / "binning.yaml",
                "--input-file-list", options.dataset / "flist.txt", "--workers", 2,
            )  # fmt: skip
            times: dict[str, dict[str, list[float]]] = {}
            for rep in range(options.repeat):
                digests = {}
                for arm in ARMS:
                    workdir = work / f"{arm}-{rep}"
                    subprocess.run(["cp", "-r", str(counted), str(workdir)], check=True)
                    root = {
                        "local": str(work / "s"),
                        "root": f"{server.url}/scratch-{rep}",
                        "dav": f"{server.dav_url}/dav-scratch-{rep}",
                    }[arm]
                    config = workdir / "project.yaml"
                    config.write_text(
                        f"processes: {EXAMPLE / 'process_types.yaml'}\n"
                        f"binning: {EXAMPLE / 'binning.yaml'}\n"
                        f"inputs: {{campaign: prod_Phase2_v2}}\n"
                        f"execution: {{scratch: '{root}'}}\n"
                    )
                    bb(
                        "plan", "--workdir", workdir, "--config", config, "--pileup", "PU200",
                        "--events-per-batch-type", 15, "--batches", 10, "--seed", 1,
                        "--output-directory", workdir / "out",
                    )  # fmt: skip
                    started = time.perf_counter()
                    log = bb("run", "--workdir", workdir, "--workers", 2)
                    phases: dict[str, str | float] = dict(PHASE.findall(log))
                    phases["run"] = round(time.perf_counter() - started, 2)
                    for phase, seconds in phases.items():
                        times.setdefault(arm, {}).setdefault(phase, []).append(float(seconds))
                    digests[arm] = digest(workdir / "out")
                    print(f"rep {rep} {arm}: {phases}", flush=True)
                same = len(set(digests.values())) == 1
                print(f"rep {rep}: outputs {'identical' if same else 'DIFFER'}", flush=True)
            for arm, phases in times.items():
                medians = {phase: statistics.median(v) for phase, v in phases.items()}
                print(f"{arm}: medians {medians}")
    finally:
        server.close()


if __name__ == "__main__":
    main()
