// Tiled matrix multiply with workgroup-memory tiles and register blocking:
// C[M×N] = op(A)[M×K] · op(B)[K×N], all row-major, with a fused epilogue.
// CPU twin: `Real::gemm` as called from src/cpu/dense.rs.
//
//   forward  (NT, EPILOGUE 1):  Z = A_prev · Wᵀ + b,  A = f(Z)  (aux = b, out2 = A)
//   dW       (TN, EPILOGUE 0):  dW = dZᵀ · A_prev                (accumulate adds to C)
//   dA_prev  (NN, EPILOGUE 2):  dZ_prev = (dZ · W) ⊙ f'(Z_prev)   (aux = Z_prev)
//
// The tile constants TM, TN, TK, RM, RN, WG_X, WG_Y come from a preamble
// written by src/gpu/kernels.rs (one place, chosen per adapter):
// a workgroup of WG_X × WG_Y threads computes a TM × TN tile of C, each
// thread RM × RN values strided by WG_Y rows and WG_X columns.

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override EPILOGUE: u32 = 0u;

// Mirrors `MatmulShape` in src/gpu/kernels.rs.
struct Shape {
    m: u32,
    n: u32,
    k: u32,
    activation: u32,
    slope: f32,
    accumulate: u32,
    // Dropout of the layer whose output this epilogue writes (forward) or
    // whose output's gradient it forms (input gradient); threshold 0: off.
    dropout_threshold: u32,
    dropout_scale: f32,
    dropout_seed: u32,
    dropout_layer: u32,
    // Rows into the batch where this pass starts (micro-batches).
    row_offset: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> aux: array<f32>;
@group(0) @binding(5) var<storage, read_write> out2: array<f32>;
@group(0) @binding(6) var<uniform> step: Step;

// The dropout factor of output element (row, col) at this step: 1 when off.
fn dropout_at(row: u32, col: u32) -> f32 {
    if shape.dropout_threshold == 0u {
        return 1.0;
    }
    let index = (shape.row_offset + row) * shape.n + col;
    return dropout_factor(shape.dropout_threshold, shape.dropout_scale, shape.dropout_seed, step.t, shape.dropout_layer, index);
}

// One output element through the epilogue (both kernels store through it).
fn epilogue(row: u32, col: u32, v: f32) {
    let at = row * shape.n + col;
    if EPILOGUE == 1u {
        let z = v + aux[col];
        c[at] = z;
        out2[at] = activate(shape.activation, shape.slope, z) * dropout_at(row, col);
    } else if EPILOGUE == 2u {
        c[at] = v * dropout_at(row, col) * activate_grad(shape.activation, shape.slope, aux[at]);
    } else if shape.accumulate != 0u {
        c[at] = c[at] + v;
    } else {
        c[at] = v;
    }
}

const THREADS: u32 = WG_X * WG_Y;

// Stored k-major so that the inner loop reads consecutive m (and n).
var<workgroup> a_tile: array<f32, TM * TK>;
var<workgroup> b_tile: array<f32, TK * TN>;

fn load_a(row: u32, col: u32) -> f32 {
    if row >= shape.m || col >= shape.k {
        return 0.0;
    }
    if TRANS_A {
        return a[col * shape.m + row];
    }
    return a[row * shape.k + col];
}

fn load_b(row: u32, col: u32) -> f32 {
    if row >= shape.k || col >= shape.n {
        return 0.0;
    }
    if TRANS_B {
        return b[col * shape.k + row];
    }
    return b[row * shape.n + col];
}

// Writes a thread's RM × RN values (rows row + r·WG_Y, columns col + s·WG_X)
// through the epilogue.
fn store_tile(row_base: u32, col_base: u32, acc: ptr<function, array<f32, RM * RN>>) {
    for (var r = 0u; r < RM; r++) {
        let row = row_base + r * WG_Y;
        if row >= shape.m {
            continue;
        }
        for (var s = 0u; s < RN; s++) {
            let col = col_base + s * WG_X;
            if col >= shape.n {
                continue;
            }
            epilogue(row, col, (*acc)[r * RN + s]);
        }
    }
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
    for (var k0 = 0u; k0 < shape.k; k0 += TK) {
        // Consecutive threads read consecutive addresses of global memory.
        for (var i = tid; i < TM * TK; i += THREADS) {
            var mm: u32;
            var kk: u32;
            if TRANS_A {
                mm = i % TM;
                kk = i / TM;
            } else {
                kk = i % TK;
                mm = i / TK;
            }
            a_tile[kk * TM + mm] = load_a(row0 + mm, k0 + kk);
        }
        for (var i = tid; i < TK * TN; i += THREADS) {
            var kk: u32;
            var nn: u32;
            if TRANS_B {
                kk = i % TK;
                nn = i / TK;
            } else {
                nn = i % TN;
                kk = i / TN;
            }
            b_tile[kk * TN + nn] = load_b(k0 + kk, col0 + nn);
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

// matmul_direct, the same product without workgroup memory or barriers
// for CPU implementations of Vulkan (lavapipe), is appended here by
// src/gpu/kernels.rs (`direct_kernel`), unrolled for its RM × RN block.

// One output of a thread's block through the epilogue (matmul_direct).
fn store_one(row: u32, col: u32, v: f32) {
    if row >= shape.m || col >= shape.n {
        return;
    }
    epilogue(row, col, v);
}
