// Matrix multiply with a fused epilogue:
// C[M×N] = op(A)[M×K] · op(B)[K×N], all row-major.
// CPU twin: `Real::gemm` as called from src/cpu/dense.rs.
//
//   forward  (NT, EPILOGUE_BIAS_ACTIVATION):  Z = A_prev · Wᵀ + b,  A = f(Z)  (aux = b, out2 = A)
//   dW       (TN, EPILOGUE_STORE):            dW = dZᵀ · A_prev
//            (TN, EPILOGUE_ADD):              dW += dZᵀ · A_prev (a step's later passes)
//   dA_prev  (NN, EPILOGUE_ACTIVATION_GRAD):  dZ_prev = (dZ · W) ⊙ f'(Z_prev)   (aux = Z_prev)
//
// The epilogue is an override constant (its codes come from `Epilogue` in
// src/gpu/codes.rs), so each pipeline holds only its own.
//
// This file holds what every matmul kernel shares: the shape, the output
// bindings and the epilogue. The kernels themselves follow it, chosen per
// adapter and product by src/gpu/tiling.rs (`MatmulChoice`): `matmul`
// (matmul_tiled.wgsl, workgroup tiles, for GPUs), and `matmul_direct` and
// `matmul_texture_*` (CPU implementations of Vulkan), unrolled there from
// the templates matmul_direct.wgsl and matmul_texture.wgsl. The tile
// constants TM, TN, TK, RM, RN, WG_X, WG_Y come from a preamble written
// there too (`MatmulTiling::source`).

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override EPILOGUE: u32 = EPILOGUE_STORE;

// The twin of `MatmulShape` in src/gpu/uniforms.rs.
struct MatmulShape {
    m: u32,
    n: u32,
    k: u32,
    activation: u32,
    slope: f32,
    // The range [k_start, k_end) of K this dispatch sums: a long reduction
    // runs as several dispatches (`reduction_chunks` in src/gpu/dispatch.rs),
    // each adding to what the previous left in C; the last (k_end == k)
    // applies the epilogue.
    k_start: u32,
    // Dropout of the layer whose output this epilogue writes (forward) or
    // whose output's gradient it forms (input gradient); threshold 0: off.
    dropout_threshold: u32,
    dropout_scale: f32,
    dropout_seed: u32,
    dropout_layer: u32,
    // Rows into the batch where this pass starts (micro-batches).
    row_offset: u32,
    k_end: u32,
}

@group(0) @binding(0) var<uniform> shape: MatmulShape;
// Bindings 1 and 2 (the operands) are declared by the kernel that reads
// them: storage buffers in matmul_tiled.wgsl and matmul_direct, textures in
// matmul_texture (src/gpu/tiling.rs writes their declarations).
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> aux: array<f32>;
@group(0) @binding(5) var<storage, read_write> out2: array<f32>;
@group(0) @binding(6) var<uniform> step: StepUniform;

// The dropout factor of output element (row, col) at this step: 1 when off.
fn dropout_at(row: u32, col: u32) -> f32 {
    if shape.dropout_threshold == 0u {
        return 1.0;
    }
    return dropout_factor(shape.dropout_threshold, shape.dropout_scale, shape.dropout_seed, step.t, shape.dropout_layer, shape.row_offset + row, col);
}

// One output element through the epilogue (both kernels store through it).
fn epilogue(row: u32, col: u32, v: f32) {
    let at = row * shape.n + col;
    if EPILOGUE == EPILOGUE_BIAS_ACTIVATION {
        let z = v + aux[col];
        c[at] = z;
        out2[at] = activation_forward(shape.activation, shape.slope, z) * dropout_at(row, col);
    } else if EPILOGUE == EPILOGUE_ACTIVATION_GRAD {
        c[at] = v * dropout_at(row, col) * activation_derivative(shape.activation, shape.slope, aux[at]);
    } else if EPILOGUE == EPILOGUE_ADD {
        c[at] = c[at] + v;
    } else {
        c[at] = v;
    }
}

// One output of a thread's block through the epilogue (matmul_direct,
// matmul_texture_*).
fn store_one(row: u32, col: u32, v: f32) {
    if row >= shape.m || col >= shape.n {
        return;
    }
    if EPILOGUE == EPILOGUE_ADD {
        epilogue(row, col, v);
        return;
    }
    let at = row * shape.n + col;
    var total = v;
    if shape.k_start > 0u {
        total += c[at];
    }
    if shape.k_end < shape.k {
        c[at] = total;
        return;
    }
    epilogue(row, col, total);
}
