// The workgroup-memory matmul for GPUs (appended to matmul.wgsl): a
// workgroup of WG_X × WG_Y threads computes a TM × TN tile of C, each thread
// RM × RN values strided by WG_Y rows and WG_X columns. Operands are
// storage buffers, transposed on the fly (TRANS_A, TRANS_B).

@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;

const THREADS: u32 = WG_X * WG_Y;

// Stored k-major so that the inner loop reads consecutive m (and n).
var<workgroup> a_tile: array<f32, TM * TK>;
var<workgroup> b_tile: array<f32, TK * TN>;

fn load_a(row: u32, col: u32) -> f32 {
    if row >= shape.m || col >= k_hi {
        return 0.0;
    }
    if TRANS_A {
        return a[a_base + col * shape.m + row];
    }
    return a[a_base + row * shape.k + col];
}

// With `bias_grad`, column N of B is all ones (the bias gradient's).
fn load_b(row: u32, col: u32) -> f32 {
    if row >= k_hi || col >= cols() {
        return 0.0;
    }
    if col >= shape.n {
        return 1.0;
    }
    if TRANS_B {
        return b[b_base + col * shape.k + row];
    }
    return b[b_base + row * shape.n + col];
}

// Writes a thread's RM × RN values (rows row + r·WG_Y, columns col + s·WG_X)
// through the epilogue, in two sweeps: first the plain values (or their sum
// with C), a loop small enough for the compiler to unroll, so that the
// accumulators stay in registers; then, for the fused epilogues, each value
// read back from C (this thread's own writes) through the epilogue. With
// the epilogue in the first sweep, 8 × 8 blocks on an H200 ran the step 4–9×
// slower than the plain kernel's timings promised (the block spilled).
// A split product's slices write their partials instead (`partials`).
fn store_tile(row_base: u32, col_base: u32, acc: ptr<function, array<f32, RM * RN>>) {
    let width = cols();
    if shape.slices > 1u {
        for (var r = 0u; r < RM; r++) {
            for (var s = 0u; s < RN; s++) {
                let row = row_base + r * WG_Y;
                let col = col_base + s * WG_X;
                if row < shape.m && col < width {
                    partials[partial_at(row, col)] = (*acc)[r * RN + s];
                }
            }
        }
        return;
    }
    for (var r = 0u; r < RM; r++) {
        for (var s = 0u; s < RN; s++) {
            let row = row_base + r * WG_Y;
            let col = col_base + s * WG_X;
            if row < shape.m && col < width {
                let v = (*acc)[r * RN + s];
                // A later chunk of K adds to what the earlier ones left.
                let add = EPILOGUE == EPILOGUE_ADD || shape.k_start > 0u;
                c_set(row, col, select(v, c_get(row, col) + v, add));
            }
        }
    }
    if EPILOGUE == EPILOGUE_STORE || EPILOGUE == EPILOGUE_ADD || shape.k_end < shape.k {
        return;
    }
    for (var r = 0u; r < RM; r++) {
        let row = row_base + r * WG_Y;
        for (var s = 0u; s < RN; s++) {
            let col = col_base + s * WG_X;
            if row < shape.m && col < width {
                epilogue(row, col, c_get(row, col));
            }
        }
    }
}

// Which value of a tile staging-loop index i loads, so that consecutive
// threads read consecutive addresses of global memory: A's (row, k)
// within the tile, and B's (k, column). Shared by every workgroup-memory
// kernel that stages scalar tiles (matmul, matmul_f16).
fn a_tile_at(i: u32) -> vec2<u32> {
    if TRANS_A {
        return vec2<u32>(i % TM, i / TM);
    }
    return vec2<u32>(i / TK, i % TK);
}

fn b_tile_at(i: u32) -> vec2<u32> {
    if TRANS_B {
        return vec2<u32>(i % TK, i / TK);
    }
    return vec2<u32>(i / TN, i % TN);
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * TM;
    let col0 = wid.x * TN;
    let tid = lid.y * WG_X + lid.x;
    var acc: array<f32, RM * RN>;
    for (var i = 0u; i < RM * RN; i++) {
        acc[i] = 0.0;
    }
    var a_reg: array<f32, RM>;
    var b_reg: array<f32, RN>;
    let range = slice_range(wid.z);
    for (var k0 = range.x; k0 < range.y; k0 += TK) {
        // Consecutive threads read consecutive addresses of global memory.
        for (var i = tid; i < TM * TK; i += THREADS) {
            let at = a_tile_at(i);
            a_tile[at.y * TM + at.x] = load_a(row0 + at.x, k0 + at.y);
        }
        for (var i = tid; i < TK * TN; i += THREADS) {
            let at = b_tile_at(i);
            b_tile[at.x * TN + at.y] = load_b(k0 + at.x, col0 + at.y);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            for (var r = 0u; r < RM; r++) {
                a_reg[r] = a_tile[kk * TM + lid.y + r * WG_Y];
            }
            for (var s = 0u; s < RN; s++) {
                b_reg[s] = b_tile[kk * TN + lid.x + s * WG_X];
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
