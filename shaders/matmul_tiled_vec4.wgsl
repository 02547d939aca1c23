// matmul_vec4: the workgroup-memory matmul with vec4 tiles and double
// buffering (appended to matmul.wgsl and matmul_tiled.wgsl, whose loads and
// bindings it uses; MatmulKind::SharedVec4, RM and RN multiples of 4).
//
// - The tiles hold vec4s of four consecutive rows (A) or columns (B), and
//   each thread computes RM / 4 × RN / 4 blocks of 4 × 4 consecutive values
//   (blocks strided by WG_Y · 4 rows and WG_X · 4 columns): the inner loop
//   reads RM / 4 + RN / 4 vec4s from workgroup memory for RM · RN
//   multiply-adds, where `matmul` reads RM + RN scalars.
// - Two tiles of each operand alternate: the threads fill the next one from
//   global memory before they multiply out the current one, so one barrier
//   a step of K separates them instead of two.
// Global loads stay scalar and bounds-checked (load_a, load_b: any shape,
// split-K slices, the bias gradient's column of ones).

const QM: u32 = TM / 4u;
const QN: u32 = TN / 4u;
const BM: u32 = RM / 4u;
const BN: u32 = RN / 4u;

// Tile `t` (0 or 1) of A at [t * TK * QM + kk * QM + mq]: a(4 mq .. 4 mq + 4, kk).
var<workgroup> a_quads: array<vec4<f32>, 2u * TK * QM>;
// Tile `t` of B at [t * TK * QN + kk * QN + nq]: b(kk, 4 nq .. 4 nq + 4).
var<workgroup> b_quads: array<vec4<f32>, 2u * TK * QN>;

// Fills tile `t` with the step of K starting at k0.
fn fill_tiles(t: u32, k0: u32, row0: u32, col0: u32, tid: u32) {
    for (var i = tid; i < TK * QM; i += THREADS) {
        // Consecutive threads along the operand's stored rows.
        var mq: u32;
        var kk: u32;
        if TRANS_A {
            mq = i % QM;
            kk = i / QM;
        } else {
            kk = i % TK;
            mq = i / TK;
        }
        let m = row0 + 4u * mq;
        let k = k0 + kk;
        a_quads[t * TK * QM + kk * QM + mq] = vec4<f32>(load_a(m, k), load_a(m + 1u, k), load_a(m + 2u, k), load_a(m + 3u, k));
    }
    for (var i = tid; i < TK * QN; i += THREADS) {
        var nq: u32;
        var kk: u32;
        if TRANS_B {
            kk = i % TK;
            nq = i / TK;
        } else {
            nq = i % QN;
            kk = i / QN;
        }
        let n = col0 + 4u * nq;
        let k = k0 + kk;
        b_quads[t * TK * QN + kk * QN + nq] = vec4<f32>(load_b(k, n), load_b(k, n + 1u), load_b(k, n + 2u), load_b(k, n + 3u));
    }
}

// Row and column of accumulator `i` (of RM · RN / 4 vec4s: block row g,
// row within it r, block column h) and the thread at (tx, ty).
fn vec4_row(row0: u32, ty: u32, i: u32) -> u32 {
    let g = i / (4u * BN);
    let r = (i / BN) % 4u;
    return row0 + (g * WG_Y + ty) * 4u + r;
}

fn vec4_col(col0: u32, tx: u32, i: u32) -> u32 {
    let h = i % BN;
    return col0 + (h * WG_X + tx) * 4u;
}

// The two sweeps of `store_tile` (matmul_tiled.wgsl) for the vec4 layout.
fn store_quads(row0: u32, col0: u32, tx: u32, ty: u32, acc: ptr<function, array<vec4<f32>, RM * BN>>) {
    let width = cols();
    let add = EPILOGUE == EPILOGUE_ADD || shape.k_start > 0u;
    for (var i = 0u; i < RM * BN; i++) {
        let row = vec4_row(row0, ty, i);
        let v = (*acc)[i];
        for (var j = 0u; j < 4u; j++) {
            let col = vec4_col(col0, tx, i) + j;
            if row < shape.m && col < width {
                if shape.slices > 1u {
                    partials[partial_at(row, col)] = v[j];
                } else {
                    c_set(row, col, select(v[j], c_get(row, col) + v[j], add));
                }
            }
        }
    }
    if shape.slices > 1u || EPILOGUE == EPILOGUE_STORE || EPILOGUE == EPILOGUE_ADD || shape.k_end < shape.k {
        return;
    }
    for (var i = 0u; i < RM * BN; i++) {
        let row = vec4_row(row0, ty, i);
        for (var j = 0u; j < 4u; j++) {
            let col = vec4_col(col0, tx, i) + j;
            if row < shape.m && col < width {
                epilogue(row, col, c_get(row, col));
            }
        }
    }
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul_vec4(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * TM;
    let col0 = wid.x * TN;
    let tid = lid.y * WG_X + lid.x;
    // acc[(g · 4 + r) · BN + h]: row r of block (g, h), four columns.
    var acc: array<vec4<f32>, RM * BN>;
    for (var i = 0u; i < RM * BN; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    var a_reg: array<vec4<f32>, BM>;
    var b_reg: array<vec4<f32>, BN>;
    let range = slice_range(wid.z);
    if range.x < range.y {
        fill_tiles(0u, range.x, row0, col0, tid);
    }
    workgroupBarrier();
    var t = 0u;
    for (var k0 = range.x; k0 < range.y; k0 += TK) {
        // The next step's tiles go to the other buffer, last read before
        // the previous barrier.
        if k0 + TK < range.y {
            fill_tiles(1u - t, k0 + TK, row0, col0, tid);
        }
        for (var kk = 0u; kk < TK; kk++) {
            for (var g = 0u; g < BM; g++) {
                a_reg[g] = a_quads[t * TK * QM + kk * QM + g * WG_Y + lid.y];
            }
            for (var h = 0u; h < BN; h++) {
                b_reg[h] = b_quads[t * TK * QN + kk * QN + h * WG_X + lid.x];
            }
            for (var g = 0u; g < BM; g++) {
                for (var r = 0u; r < 4u; r++) {
                    let a = vec4<f32>(a_reg[g][r]);
                    for (var h = 0u; h < BN; h++) {
                        let i = (g * 4u + r) * BN + h;
                        acc[i] = fma(a, b_reg[h], acc[i]);
                    }
                }
            }
        }
        workgroupBarrier();
        t = 1u - t;
    }
    store_quads(row0, col0, lid.x, lid.y, &acc);
}
