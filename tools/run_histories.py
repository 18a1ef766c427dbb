"""Run many random histories of the pack (tests/test_histories.py) and report what they found.

    .venv/bin/python tools/run_histories.py [--histories 10000] [--steps 30] [--chunk 250]
                                            [--minutes 0]

Histories run in chunks of ``--chunk`` with fresh random seeds; a failing chunk is reported
(the shrunk history and the broken invariant) and the run goes on. ``--minutes`` stops after
that wall time (0: no limit) and the report says how many histories actually ran.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--histories", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--chunk", type=int, default=250)
    parser.add_argument("--minutes", type=float, default=0)
    args = parser.parse_args()
    os.environ["VM_EXPIRY_HISTORY_STEPS"] = str(args.steps)
    sys.path.insert(0, str(TESTS))

    from hypothesis import settings
    from hypothesis.stateful import run_state_machine_as_test
    from test_histories import ExpiryHistories

    base = ExpiryHistories.TestCase.settings
    started = time.monotonic()
    done = 0
    findings: list[str] = []
    while done < args.histories:
        if args.minutes and time.monotonic() - started > args.minutes * 60:
            break
        chunk = min(args.chunk, args.histories - done)
        before = ExpiryHistories.ran
        try:
            run_state_machine_as_test(ExpiryHistories, settings=settings(
                base, max_examples=chunk, stateful_step_count=args.steps, database=None))
        except BaseException as error:  # a broken invariant: report it and go on
            if isinstance(error, KeyboardInterrupt):
                raise
            findings.append("".join(traceback.format_exception(error))[-4000:])
        # Hypothesis may stop a chunk early; count the histories that really started.
        done += min(chunk, ExpiryHistories.ran - before)
        rate = done / (time.monotonic() - started)
        print(f"{done} histories, {len(findings)} failing chunk(s), {rate:.1f}/s", flush=True)
    elapsed = time.monotonic() - started
    print(f"\nran {done} histories of up to {args.steps} steps in {elapsed:.0f} s "
          f"({done / elapsed:.1f}/s); histories started including shrinking: "
          f"{ExpiryHistories.ran}")
    if findings:
        print(f"FOUND {len(findings)} invariant violation(s):")
        for finding in findings:
            print(finding)
        return 1
    print("found no invariant violation")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
