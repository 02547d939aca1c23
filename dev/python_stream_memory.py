"""How much memory the Python package's fit takes on a file larger than a
window: the growth of the process's anonymous memory (RssAnon: what it
allocates; a memory map's pages are the file's, RssFile, and the system
drops them when it needs the memory) at its peak during one epoch, sampled
every 10 ms, for the same rows

    memmap   a float64 .npy memory map (read a part at a time),
    parquet  a Parquet file of the rows (its row groups read a part at a time),
    table    a pyarrow Table read from that file (lent, converted a part at a time),
    held     the rows held as a float32 array (numpy.asarray of the map),

with y (float32 zeros) given apart for memmap and held, a target column
for parquet and table. Prints `HOW ROWS grown MiB`; the peak also in
`ru_maxrss`. Used by python/tests/test_sources.py (memmap, 2^23 rows):

    python dev/python_stream_memory.py --rows 8388608 --how memmap
    for how in memmap parquet table held; do python dev/python_stream_memory.py --how $how; done
"""

import argparse
import os
import resource
import tempfile
import threading

import numpy as np

import retroprop

FEATURES = 4


def anonymous_bytes():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")


def write_rows(directory, rows):
    """A float64 .npy of rows × FEATURES (values 0..6), written a part at a time."""
    path = os.path.join(directory, f"rows{rows}.npy")
    if not os.path.exists(path):
        x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(rows, FEATURES))
        step = 1 << 18
        for start in range(0, rows, step):
            end = min(rows, start + step)
            x[start:end] = (np.arange(start, end)[:, None] + np.arange(FEATURES)) % 7
        x.flush()
        del x
    return path


def write_parquet(directory, npy, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = os.path.join(directory, f"rows{rows}.parquet")
    if not os.path.exists(path):
        x = np.load(npy, mmap_mode="r")
        schema = pa.schema([(f"f{i}", pa.float64()) for i in range(FEATURES)] + [("y", pa.float32())])
        with pq.ParquetWriter(path, schema) as writer:
            step = 1 << 18
            for start in range(0, rows, step):
                part = np.asarray(x[start:start + step])
                columns = [pa.array(part[:, i]) for i in range(FEATURES)]
                columns.append(pa.array(np.zeros(len(part), np.float32)))
                writer.write_table(pa.Table.from_arrays(columns, schema=schema), row_group_size=65536)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1 << 23)
    parser.add_argument("--how", choices=["memmap", "parquet", "table", "held"], default="memmap")
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    npy = write_rows(args.dir, args.rows)
    data = {}
    if args.how in ("parquet", "table"):
        data["path"] = write_parquet(args.dir, npy, args.rows)
    if args.how == "table":
        import pyarrow.parquet as pq

        data["table"] = pq.read_table(data["path"], memory_map=True)
    y = np.zeros(args.rows, dtype=np.float32)
    x = np.load(npy, mmap_mode="r")
    trainer = retroprop.Trainer([FEATURES, 4, 1], "relu", "mse", batch_size=65536, epochs=1, device="cpu")
    before = anonymous_bytes()
    peak = [before]
    done = threading.Event()

    def watch():
        while not done.wait(0.01):
            peak[0] = max(peak[0], anonymous_bytes())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        if args.how == "memmap":
            trainer.fit(x, y)
        elif args.how == "held":
            trainer.fit(np.asarray(x, dtype=np.float32), y)
        elif args.how == "parquet":
            trainer.fit(data["path"], target="y")
        else:
            trainer.fit(data["table"], target="y")
    finally:
        done.set()
        watcher.join()
    peak[0] = max(peak[0], anonymous_bytes())
    grown = (peak[0] - before) / 2**20
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.how} {args.rows} rows: ru_maxrss {maxrss:.0f} MiB; anonymous memory grew by {grown:.1f} MiB")


if __name__ == "__main__":
    main()
