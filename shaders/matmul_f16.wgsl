// The mixed-precision matmul (appended to matmul.wgsl and
// matmul_tiled.wgsl, whose bindings, loads and store it shares; the module
// starts with `enable f16;`): the workgroup-memory kernel with its tiles
// staged as f16, the way torch.autocast(dtype=torch.float16) computes a
// product. Each operand is rounded to f16 once, as it enters workgroup
// memory (round to nearest: unit roundoff 2⁻¹¹); the product of two f16
// values is exact in f32 (11 + 11 significant bits ≤ 24), so every
// multiply-add rounds only the f32 sum. C, the epilogue and everything
// outside the products stay f32.
//
// Chosen for every product of a run in `Precision::Mixed` by
// src/gpu/tiling.rs (`MatmulChoice::mixed`, `MatmulKind::Half`); the CPU
// twin of its rounding is `round_to_f16` in tests/mixed_precision.rs.

var<workgroup> a_half: array<f16, TM * TK>;
var<workgroup> b_half: array<f16, TK * TN>;

@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul_f16(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * TM;
    let col0 = wid.x * TN;
    let tid = lid.y * WG_X + lid.x;
    var acc: array<f32, RM * RN>;
    for (var i = 0u; i < RM * RN; i++) {
        acc[i] = 0.0;
    }
    var a_reg: array<f32, RM>;
    var b_reg: array<f32, RN>;
    // This workgroup's range of K (its slice, when the product is split).
    let range = slice_range(wid.z);
    for (var k0 = range.x; k0 < range.y; k0 += TK) {
        // As matmul_tiled.wgsl stages its tiles, rounded to f16 on the way.
        for (var i = tid; i < TM * TK; i += THREADS) {
            let at = a_tile_at(i);
            a_half[at.y * TM + at.x] = f16(load_a(row0 + at.x, k0 + at.y));
        }
        for (var i = tid; i < TK * TN; i += THREADS) {
            let at = b_tile_at(i);
            b_half[at.x * TN + at.y] = f16(load_b(k0 + at.x, col0 + at.y));
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            // Widened once a slice: exact, so the fma below multiplies
            // the f16 values themselves.
            for (var r = 0u; r < RM; r++) {
                a_reg[r] = f32(a_half[kk * TM + lid.y + r * WG_Y]);
            }
            for (var s = 0u; s < RN; s++) {
                b_reg[s] = f32(b_half[kk * TN + lid.x + s * WG_X]);
            }
            for (var r = 0u; r < RM; r++) {
                for (var s = 0u; s < RN; s++) {
                    acc[r * RN + s] = fma(a_reg[r], b_reg[s], acc[r * RN + s]);
                }
            }
        }
        workgroupBarrier();
    }
    store_tile(row0 + lid.y, col0 + lid.x, &acc);
}
