#!/usr/bin/env python3
"""The cost model of docs/scaling.md: one data-parallel step of the
standard work (784-1024-1024-10, Adam) on N GPUs, and what it predicts at
10, 100 and 400 Gb/s. Prints the tables the document shows.

    python3 dev/scaling_model.py

T(1) = the fused single-process step (measured, docs/performance.md, H200).
T(N) = C(B/N) + O + R + A(N) + H                                  (N > 1)
  C(b)  forward, backward and update of b rows: the H200's fused step time
        at batch b, linear between the measured batches, flat below 64
  O     the step in phases instead of fused (three submissions and a wait)
  R     the gradient read back and written again over PCIe: 2 S / PCIE
  A(N)  ring all-reduce: 2 (N - 1) alpha + 2 (N - 1) / N * S / bandwidth
  H     the adding in rank order on the host: S floats at ADD_NS each
"""

S_FLOATS = 1_863_690  # parameters of 784-1024-1024-10
S = 4 * S_FLOATS  # bytes of the gradient
# H200, fused step ms against batch (docs/performance.md, default tiling).
STEP_MS = {64: 0.55, 256: 0.62, 1024: 1.04, 4096: 3.37}
O_MS = 0.10  # assumed: ~ the per-step dispatch overhead measured on the H100
PCIE = 25e9  # assumed bytes/s each way through wgpu's staging buffers
ADD_NS = 1.35  # measured here, loaded (examples/scaling.rs: 2.52 ms for S floats)
LINKS = {10: (25e-6, 10e9 / 8), 100: (5e-6, 100e9 / 8), 400: (5e-6, 400e9 / 8)}


def compute_ms(rows):
    points = sorted(STEP_MS.items())
    if rows <= points[0][0]:
        return points[0][1]
    for (b0, t0), (b1, t1) in zip(points, points[1:]):
        if rows <= b1:
            return t0 + (t1 - t0) * (rows - b0) / (b1 - b0)
    (b0, t0), (b1, t1) = points[-2], points[-1]
    return t1 + (t1 - t0) * (rows - b1) / (b1 - b0)


def allreduce_ms(n, gbits):
    alpha, bandwidth = LINKS[gbits]
    return 1e3 * (2 * (n - 1) * alpha + 2 * (n - 1) / n * S / bandwidth)


def step_ms(n, batch, gbits):
    if n == 1:
        return compute_ms(batch)
    fixed = O_MS + 1e3 * 2 * S / PCIE + 1e-6 * S_FLOATS * ADD_NS
    return compute_ms(batch / n) + fixed + allreduce_ms(n, gbits)


def main():
    print(f"gradient {S / 1e6:.3f} MB; R = {1e3 * 2 * S / PCIE:.2f} ms, "
          f"H = {1e-6 * S_FLOATS * ADD_NS:.2f} ms, O = {O_MS:.2f} ms")
    for batch in (1024, 4096):
        print(f"\nglobal batch {batch}: step ms (speed-up over one GPU); "
              "* where the all-reduce takes longer than the compute C(B/N)")
        print("| N | C(B/N) | " + " | ".join(f"{g} Gb/s: A(N), step" for g in LINKS) + " |")
        print("| --- | --- | " + " | ".join("---" for _ in LINKS) + " |")
        one = step_ms(1, batch, 10)
        for n in (1, 2, 4, 8, 16, 32, 64):
            cells = []
            for g in LINKS:
                if n == 1:
                    cells.append(f"-, {one:.2f}")
                    continue
                a, t = allreduce_ms(n, g), step_ms(n, batch, g)
                mark = "*" if a > compute_ms(batch / n) else ""
                cells.append(f"{a:.2f}{mark}, {t:.2f} ({one / t:.2f}×)")
            print(f"| {n} | {compute_ms(batch / n):.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
