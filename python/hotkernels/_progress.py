"""A one-line progress bar on stderr, for the command line (stdout stays the report)."""

import sys


def progress(done: int, total: int, label: str = "") -> None:
    width = 30
    filled = width * done // max(total, 1)
    end = "\n" if done >= total else ""
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label[:60]:<60}", end=end, file=sys.stderr, flush=True)
