#!/usr/bin/env python3
"""How long this disk takes to fdatasync a small log write, alone or while
another file is written and synced beside it (as SQLite's checkpointer does
beside the store's log). Used for docs/performance.md (issue 22).

usage: fsync_tail.py LOG_KIB BACKGROUND_MB_PER_S [BACKGROUND_SYNC_EVERY_S]
       (run in a folder on the disk to measure; it writes two 64 MiB files)
"""
import os
import random
import sys
import threading
import time

log_bytes = int(sys.argv[1]) * 1024
background = float(sys.argv[2])
every = float(sys.argv[3]) if len(sys.argv) > 3 else 0.02
stop = False


def checkpointer():
    fd = os.open("fsync_tail.db", os.O_RDWR | os.O_CREAT)
    os.ftruncate(fd, 64 << 20)
    page = os.urandom(4096)
    while not stop:
        started = time.time()
        for _ in range(int(background * 1e6 * every / 4096)):
            os.pwrite(fd, page, random.randrange(16384) * 4096)
        os.fsync(fd)
        left = every - (time.time() - started)
        if left > 0:
            time.sleep(left)


if background > 0:
    threading.Thread(target=checkpointer, daemon=True).start()
fd = os.open("fsync_tail.wal", os.O_RDWR | os.O_CREAT)
os.ftruncate(fd, 64 << 20)
buf = os.urandom(log_bytes)
latencies, offset, end = [], 0, time.time() + 6
while time.time() < end:
    os.pwrite(fd, buf, offset)
    offset = (offset + log_bytes) % (60 << 20)
    t = time.perf_counter()
    os.fdatasync(fd)
    latencies.append(time.perf_counter() - t)
    time.sleep(0.0003)
stop = True
latencies.sort()
q = lambda p: latencies[int(p * len(latencies))] * 1000
print(f"log={log_bytes // 1024}KiB background={background}MB/s every={every}s n={len(latencies)} "
      f"p50={q(.5):.3f} p90={q(.9):.3f} p99={q(.99):.3f} ms")
for f in ("fsync_tail.db", "fsync_tail.wal"):
    os.remove(f)
