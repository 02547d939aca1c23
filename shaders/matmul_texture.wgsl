// matmul_texture_nn, _nt, _tn and _tt: like matmul_direct, but the operands are
// textures packed by pack.wgsl, each texel four consecutive values of a row
// as stored (appended to matmul.wgsl, once per transposition variant). A
// texel fetch on lavapipe is vectorised (no per-lane loop with bounds
// branches, as a storage-buffer load has) and brings four values: 13–22
// GFLOP/s against 3 for matmul_direct (docs/performance.md). K advances a
// quad at a time; the packing pads every operand with zeros to whole quads
// along K, so no edge test is needed inside the loop. Per quad a thread
// fetches RM + RN texels for 4 · RM · RN multiply-adds, in the same k order
// as the CPU.
//
// A template, expanded by src/gpu/unroll.rs: `//# for` lines repeat what
// they enclose, `//# if` keeps one branch (TRANS_A, TRANS_B: the variant),
// an expression in braces is replaced by its value (RM, RN: the block), and
// lane(i) in braces by the vec4 component i.

@compute @workgroup_size(WG_X, WG_Y, 1)
//# if TRANS_A
//# if TRANS_B
fn matmul_texture_tt(@builtin(global_invocation_id) gid: vec3<u32>) {
//# else
fn matmul_texture_tn(@builtin(global_invocation_id) gid: vec3<u32>) {
//# end
//# else
//# if TRANS_B
fn matmul_texture_nt(@builtin(global_invocation_id) gid: vec3<u32>) {
//# else
fn matmul_texture_nn(@builtin(global_invocation_id) gid: vec3<u32>) {
//# end
//# end
    let row = gid.y * RM;
    let col = gid.x * RN;
    // Coordinates past the edge are clamped to the last valid row or texel
    // (always in bounds, no branch); store_one drops their results.
//# if TRANS_A
    // A stored K × M: texel (m / 4, k) holds a(m..m+4, k).
//# for g in 0..RM / 4
    let ax{g} = i32(min(row / 4u + {g}u, (shape.m + 3u) / 4u - 1u));
//# end
//# else
    // A stored M × K: texel (k / 4, m) holds a(m, k..k+4).
//# for r in 0..RM
    let ay{r} = i32(min(row + {r}u, shape.m - 1u));
//# end
//# end
//# if TRANS_B
    // B stored N × K: texel (k / 4, n) holds b(k..k+4, n).
//# for j in 0..RN
    let by{j} = i32(min(col + {j}u, shape.n - 1u));
//# end
//# else
    // B stored K × N: texel (n / 4, k) holds b(k, n..n+4).
//# for g in 0..RN / 4
    let bx{g} = i32(min(col / 4u + {g}u, (shape.n + 3u) / 4u - 1u));
//# end
//# end
//# for r in 0..RM
//# for j in 0..RN
    var acc{r}_{j} = 0.0;
//# end
//# end
    // This workgroup's slice of K, in quads: chunks and slices start at
    // multiples of 4, and an empty slice (start = end) at the end of K, whose
    // rounding up leaves no quad.
    let range = slice_range(gid.z);
    let quads = i32((range.y + 3u) / 4u);
    for (var q = i32((range.x + 3u) / 4u); q < quads; q++) {
//# if TRANS_A
//# for kk in 0..4
//# for g in 0..RM / 4
        let a{kk}_{g} = textureLoad(ta, vec2<i32>(ax{g}, 4i * q + {kk}i), 0);
//# end
//# end
//# else
//# for r in 0..RM
        let a{r} = textureLoad(ta, vec2<i32>(q, ay{r}), 0);
//# end
//# end
//# if TRANS_B
//# for j in 0..RN
        let b{j} = textureLoad(tb, vec2<i32>(q, by{j}), 0);
//# end
//# else
//# for kk in 0..4
//# for g in 0..RN / 4
        let b{kk}_{g} = textureLoad(tb, vec2<i32>(bx{g}, 4i * q + {kk}i), 0);
//# end
//# end
//# end
        // acc(r, j) += a(r, k) · b(k, j) for the quad's four k, in order,
        // as one expression (as separate statements lavapipe ran the
        // standard work 3–5 % slower).
//# for r in 0..RM
//# for j in 0..RN
//# if TRANS_A
//# if TRANS_B
        acc{r}_{j} = fma(a3_{r / 4}.{lane(r % 4)}, b{j}.w, fma(a2_{r / 4}.{lane(r % 4)}, b{j}.z, fma(a1_{r / 4}.{lane(r % 4)}, b{j}.y, fma(a0_{r / 4}.{lane(r % 4)}, b{j}.x, acc{r}_{j}))));
//# else
        acc{r}_{j} = fma(a3_{r / 4}.{lane(r % 4)}, b3_{j / 4}.{lane(j % 4)}, fma(a2_{r / 4}.{lane(r % 4)}, b2_{j / 4}.{lane(j % 4)}, fma(a1_{r / 4}.{lane(r % 4)}, b1_{j / 4}.{lane(j % 4)}, fma(a0_{r / 4}.{lane(r % 4)}, b0_{j / 4}.{lane(j % 4)}, acc{r}_{j}))));
//# end
//# else
//# if TRANS_B
        acc{r}_{j} = fma(a{r}.w, b{j}.w, fma(a{r}.z, b{j}.z, fma(a{r}.y, b{j}.y, fma(a{r}.x, b{j}.x, acc{r}_{j}))));
//# else
        acc{r}_{j} = fma(a{r}.w, b3_{j / 4}.{lane(j % 4)}, fma(a{r}.z, b2_{j / 4}.{lane(j % 4)}, fma(a{r}.y, b1_{j / 4}.{lane(j % 4)}, fma(a{r}.x, b0_{j / 4}.{lane(j % 4)}, acc{r}_{j}))));
//# end
//# end
//# end
//# end
    }
    // The epilogue through an array and a loop, as in matmul_direct.
    var out: array<f32, {RM * RN}>;
//# for r in 0..RM
//# for j in 0..RN
    out[{r * RN + j}] = acc{r}_{j};
//# end
//# end
    let blocks = select({RM * RN}u, 0u, shape.m == 0xffffffffu);
    for (var i = 0u; i < blocks; i++) {
        store_one(row + i / RN, col + i % RN, out[i]);
    }
}
