#!/usr/bin/env python3
"""The reference copier a user would write: one SCAN process feeding N worker processes that
pipeline DUMP + PTTL on the source and RESTORE ... REPLACE on the target, 1000 keys per batch."""
import multiprocessing as mp
import sys

import redis


def worker(queue, src_port, dst_port):
    src = redis.Redis(port=src_port)
    dst = redis.Redis(port=dst_port)
    while True:
        keys = queue.get()
        if keys is None:
            return
        p = src.pipeline(transaction=False)
        for k in keys:
            p.dump(k)
            p.pttl(k)
        replies = p.execute()
        w = dst.pipeline(transaction=False)
        for i, k in enumerate(keys):
            payload, ttl = replies[2 * i], replies[2 * i + 1]
            if payload is not None and ttl != -2:
                w.restore(k, max(ttl, 0), payload, replace=True)
        w.execute()


def main():
    src_port, dst_port, procs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    queue = mp.Queue(maxsize=procs * 4)
    workers = [mp.Process(target=worker, args=(queue, src_port, dst_port)) for _ in range(procs)]
    for w in workers:
        w.start()
    src = redis.Redis(port=src_port)
    cursor = 0
    while True:
        cursor, keys = src.scan(cursor, count=1000)
        if keys:
            queue.put(keys)
        if cursor == 0:
            break
    for _ in workers:
        queue.put(None)
    for w in workers:
        w.join()


if __name__ == "__main__":
    main()
