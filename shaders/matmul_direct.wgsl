// matmul_direct: the product without workgroup memory or barriers, for CPU
// implementations of Vulkan (lavapipe) when an operand is too large for a
// texture (appended to matmul.wgsl). A workgroup there runs as a SIMD loop
// over its invocations, caches do what workgroup tiles do on a GPU,
// barriers are expensive, and every load from a storage buffer costs tens
// of cycles (per-lane robustness checks). So each thread computes a large
// RM × RN block of contiguous rows and columns: RM + RN loads feed RM · RN
// multiply-adds per step of k, in named vec4 accumulators.
//
// A template, expanded by src/gpu/unroll.rs: `//# for` lines repeat what
// they enclose, and an expression in braces is replaced by its value (RM,
// RN: the block; GROUPS = RN / 4).

@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;

@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul_direct(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.y * RM;
    let col = gid.x * RN;
    // Rows and columns past the edge read the last valid one (always in
    // bounds, no branch); store_one drops their results.
//# for r in 0..RM
    let ar{r} = min(row + {r}u, shape.m - 1u);
//# end
//# for j in 0..RN
    let bc{j} = min(col + {j}u, shape.n - 1u);
//# end
//# for r in 0..RM
//# for g in 0..GROUPS
    var acc{r}_{g} = vec4<f32>(0.0);
//# end
//# end
    let range = slice_range(gid.z);
    for (var kk = range.x; kk < range.y; kk++) {
//# for g in 0..GROUPS
        let b{g} = vec4<f32>(b[b_base + select(kk * shape.n + bc{4 * g}, bc{4 * g} * shape.k + kk, TRANS_B)], b[b_base + select(kk * shape.n + bc{4 * g + 1}, bc{4 * g + 1} * shape.k + kk, TRANS_B)], b[b_base + select(kk * shape.n + bc{4 * g + 2}, bc{4 * g + 2} * shape.k + kk, TRANS_B)], b[b_base + select(kk * shape.n + bc{4 * g + 3}, bc{4 * g + 3} * shape.k + kk, TRANS_B)]);
//# end
//# for r in 0..RM
        let a{r} = vec4<f32>(a[a_base + select(ar{r} * shape.k + kk, kk * shape.m + ar{r}, TRANS_A)]);
//# for g in 0..GROUPS
        acc{r}_{g} = fma(a{r}, b{g}, acc{r}_{g});
//# end
//# end
    }
    // Through an array and a loop: the epilogue compiled once, not RM · RN
    // times. The bound is opaque to LLVM (shape.m is never u32::MAX) so
    // that it does not unroll the loop again.
    var out: array<vec4<f32>, {RM * GROUPS}>;
//# for r in 0..RM
//# for g in 0..GROUPS
    out[{r * GROUPS + g}] = acc{r}_{g};
//# end
//# end
    let blocks = select({RM * GROUPS}u, 0u, shape.m == 0xffffffffu);
    for (var i = 0u; i < blocks; i++) {
        let r = i / {GROUPS}u;
        let c0 = (i % {GROUPS}u) * 4u;
        for (var j = 0u; j < 4u; j++) {
            store_one(row + r, col + c0 + j, out[i][j]);
        }
    }
}
