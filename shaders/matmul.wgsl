// Matrix multiply with a fused epilogue:
// C[M×N] = op(A)[M×K] · op(B)[K×N], all row-major.
// CPU twin: `Gemm::gemm` in src/cpu/gemm.rs, as called from src/cpu/dense.rs.
//
//   forward  (NT, EPILOGUE_BIAS_ACTIVATION):  Z = A_prev · Wᵀ + b,  A = f(Z)  (aux = b, out2 = A)
//   dW       (TN, EPILOGUE_STORE):            dW = dZᵀ · A_prev
//            (TN, EPILOGUE_ADD):              dW += dZᵀ · A_prev (a step's later passes)
//   dA_prev  (NN, EPILOGUE_ACTIVATION_GRAD):  dZ_prev = (dZ · W) ⊙ f'(Z_prev)   (aux = Z_prev)
//
// TabM's members' own layers (W `[k, in, out]` a member, the member the
// dispatch's z): forward NN with EPILOGUE_BIAS_ACTIVATION, dW_m = X_mᵀ ·
// dZ_m (TN), dX_m NT with EPILOGUE_ACTIVATION_GRAD.
//
// With `bias_grad` (weight gradients, workgroup-memory kernel), B has one
// more column, of ones, whose output column is the bias gradient
// db (+)= Σ_rows dZ, stored in out2 (`c_get`, `c_set`).
//
// Split-K: with `slices` > 1, the workgroups of z = 0, 1, … each sum a
// slice of `slice_k` values of this dispatch's range of K and write their
// partial C to `partials` (slice after slice); `matmul_finish` then adds
// the slices in order 0, 1, 2, … and applies what the kernel would have
// (the chunk's addition to C, the epilogue), so a split product is the
// same from one run to the next (src/gpu/dispatch.rs, `split_layout`).
//
// The epilogue is an override constant (its codes come from `Epilogue` in
// src/gpu/codes.rs), so each pipeline holds only its own.
//
// Members (src/gpu/members.rs): with `members` > 1 the dispatch's z holds
// the members (z = member · slices + slice), every member's product at
// once, each operand and output `member_*` values from the member before
// (0: one shared by every member, such as the first layer's input when
// the members share their batches), and each member's dropout in
// `member_dropout`. The storage-buffer kernels (`matmul`, `matmul_direct`)
// read through these bases; the texture kernels serve lone runs only.
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
    // Split-K: the slices of this dispatch's range of K (1: not split),
    // each `slice_k` long (the last may be shorter or empty).
    slices: u32,
    slice_k: u32,
    // 1: B has an extra column of ones, its output the bias gradient in out2.
    bias_grad: u32,
    // TabM: the rows of a member (0: not TabM). Dropout is the shape's, a
    // member's columns past the others' (`drop_out` in src/cpu/sequence.rs);
    // the member is the dispatch's z (the members' own layers) or, over
    // every member's stacked rows, the block of rows it is in.
    ensemble_rows: u32,
    // Members: how many the dispatch's z holds (1: a lone run), and each
    // binding's distance in values from one member's data to the next.
    members: u32,
    member_a: u32,
    member_b: u32,
    member_c: u32,
    member_aux: u32,
    member_out2: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> shape: MatmulShape;
// Bindings 1 and 2 (the operands) are declared by the kernel that reads
// them: storage buffers in matmul_tiled.wgsl and matmul_direct, textures in
// matmul_texture (src/gpu/tiling.rs writes their declarations).
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> aux: array<f32>;
@group(0) @binding(5) var<storage, read_write> out2: array<f32>;
@group(0) @binding(6) var<uniform> step: StepUniform;
// Each slice's partial C, `shape.m × cols()` values a slice (split-K).
@group(0) @binding(7) var<storage, read_write> partials: array<f32>;
// Each member's step (members runs; `MemberStep` in src/gpu/uniforms.rs,
// six vec4 a member a step slot): its dropout and its optimizer step t.
@group(0) @binding(8) var<storage, read> member_steps: array<vec4<u32>>;

// This workgroup's slice of K and member (its z), where its reduction
// ends, and where its member's operands and outputs start in their
// bindings, set by `slice_range` when a kernel starts.
var<private> slice: u32;
var<private> member: u32;
var<private> k_hi: u32;
var<private> a_base: u32;
var<private> b_base: u32;
var<private> c_base: u32;
var<private> aux_base: u32;
var<private> out2_base: u32;

// The range [start, end) of K that slice `z` of this dispatch sums: the
// dispatch's whole range when the product is not split.
fn slice_range(z: u32) -> vec2<u32> {
    let slices = max(shape.slices, 1u);
    slice = z % slices;
    member = z / slices;
    a_base = member * shape.member_a;
    b_base = member * shape.member_b;
    c_base = member * shape.member_c;
    aux_base = member * shape.member_aux;
    out2_base = member * shape.member_out2;
    var range = vec2<u32>(shape.k_start, shape.k_end);
    if shape.slices > 1u {
        let start = min(shape.k_start + slice * shape.slice_k, shape.k_end);
        range = vec2<u32>(start, min(start + shape.slice_k, shape.k_end));
    }
    k_hi = range.y;
    return range;
}

// Columns of the product: N, and the bias gradient's with `bias_grad`.
fn cols() -> u32 {
    return shape.n + shape.bias_grad;
}

// C at (row, col); the bias gradient's element `row` at col = N.
fn c_get(row: u32, col: u32) -> f32 {
    if col >= shape.n {
        return out2[out2_base + row];
    }
    return c[c_base + row * shape.n + col];
}

fn c_set(row: u32, col: u32, v: f32) {
    if col >= shape.n {
        out2[out2_base + row] = v;
        return;
    }
    c[c_base + row * shape.n + col] = v;
}

// The dropout factor of output element (row, col) at this step: 1 when off.
fn dropout_at(row: u32, col: u32) -> f32 {
    var threshold = shape.dropout_threshold;
    var scale = shape.dropout_scale;
    var seed = shape.dropout_seed;
    var t = step.t;
    if shape.ensemble_rows != 0u {
        if threshold == 0u {
            return 1.0;
        }
        var m = member;
        var r = row;
        if shape.members <= 1u {
            m = row / shape.ensemble_rows;
            r = row % shape.ensemble_rows;
        }
        return dropout_factor(threshold, scale, seed, t, shape.dropout_layer, shape.row_offset + r, m * shape.n + col);
    }
    if shape.members > 1u {
        // A layer without dropout says so for every member.
        if shape.dropout_layer == 0xffffffffu {
            return 1.0;
        }
        let at = (step.slot * shape.members + member) * MEMBER_STEP_VEC4S;
        threshold = member_steps[at].w;
        t = member_steps[at].z;
        scale = bitcast<f32>(member_steps[at + 1u].x);
        seed = member_steps[at + 1u].y;
    }
    if threshold == 0u {
        return 1.0;
    }
    return dropout_factor(threshold, scale, seed, t, shape.dropout_layer, shape.row_offset + row, col);
}

// One output element through the epilogue (both kernels store through it).
fn epilogue(row: u32, col: u32, v: f32) {
    let at = c_base + row * shape.n + col;
    if EPILOGUE == EPILOGUE_BIAS_ACTIVATION {
        let z = v + aux[aux_base + col];
        c[at] = z;
        out2[out2_base + row * shape.n + col] = activation_forward(shape.activation, shape.slope, z) * dropout_at(row, col);
    } else if EPILOGUE == EPILOGUE_ACTIVATION_GRAD {
        c[at] = v * dropout_at(row, col) * activation_derivative(shape.activation, shape.slope, aux[aux_base + row * shape.n + col]);
    } else if EPILOGUE == EPILOGUE_ADD {
        c_set(row, col, c_get(row, col) + v);
    } else {
        c_set(row, col, v);
    }
}

// One output element's whole sum `v` (over this dispatch's range of K):
// added to what the earlier chunks of K left in C, stored, or through the
// epilogue by the last chunk.
fn finish_one(row: u32, col: u32, v: f32) {
    if EPILOGUE == EPILOGUE_ADD {
        epilogue(row, col, v);
        return;
    }
    var total = v;
    if shape.k_start > 0u {
        total += c_get(row, col);
    }
    if shape.k_end < shape.k {
        c_set(row, col, total);
        return;
    }
    epilogue(row, col, total);
}

// Where slice `slice`'s partial of element (row, col) is kept (split-K).
fn partial_at(row: u32, col: u32) -> u32 {
    return (slice * shape.m + row) * cols() + col;
}

// One output of a thread's block (matmul_direct, matmul_texture_*): its
// partial when the product is split, else through `finish_one`.
fn store_one(row: u32, col: u32, v: f32) {
    if row >= shape.m || col >= cols() {
        return;
    }
    if shape.slices > 1u {
        partials[partial_at(row, col)] = v;
        return;
    }
    finish_one(row, col, v);
}

// Split-K's second dispatch, a thread an element of C: the slices' partials
// added in order 0, 1, 2, …, then what the kernel does with a whole sum.
@compute @workgroup_size(64)
fn matmul_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, groups, lid, 64u);
    let size = shape.m * cols();
    if i >= size {
        return;
    }
    var v = partials[i];
    for (var s = 1u; s < shape.slices; s++) {
        v += partials[s * size + i];
    }
    finish_one(i / cols(), i % cols(), v);
}
