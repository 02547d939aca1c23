// Deterministic reductions: a fixed summation tree in workgroup memory, no
// float atomics, so the same inputs give bit-identical sums on every run.

// The twin of `ReduceShape` in src/gpu/uniforms.rs.
struct ReduceShape {
    rows: u32,
    cols: u32,
    accumulate: u32,
    // Where `column_sums` writes in `out` (in floats).
    out_offset: u32,
    // Members: how many (the dispatch's z; 0 or 1 for a lone run), and
    // each member's distance in `input` and in `out` from the one before.
    members: u32,
    input_stride: u32,
    out_stride: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> shape: ReduceShape;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> step: StepUniform;

const COLS: u32 = 16u;
const LANES: u32 = 16u;
var<workgroup> partial: array<f32, COLS * LANES>;

// out[out_offset + c] (+)= Σ_r input[r · cols + c]: bias gradients
// db = Σ_batch dZ. A workgroup sums 16 columns, 16 lanes down the rows;
// the workgroups fold into y past the per-dimension limit (`grid` in
// src/gpu/dispatch.rs).
@compute @workgroup_size(COLS, LANES)
fn column_sums(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let col = (wid.y * groups.x + wid.x) * COLS + lid.x;
    let input_base = wid.z * shape.input_stride;
    var sum = 0.0;
    if col < shape.cols {
        for (var r = lid.y; r < shape.rows; r += LANES) {
            sum += input[input_base + r * shape.cols + col];
        }
    }
    partial[lid.y * COLS + lid.x] = sum;
    workgroupBarrier();
    for (var half = LANES / 2u; half > 0u; half /= 2u) {
        if lid.y < half {
            partial[lid.y * COLS + lid.x] += partial[(lid.y + half) * COLS + lid.x];
        }
        workgroupBarrier();
    }
    if lid.y == 0u && col < shape.cols {
        let at = wid.z * shape.out_stride + shape.out_offset + col;
        out[at] = select(0.0, out[at], shape.accumulate != 0u) + partial[lid.x];
    }
}

const GROUP: u32 = 256u;
var<workgroup> pair: array<vec2<f32>, GROUP>;

// The batch's loss and number correct from the per-row stats of loss.wgsl,
// into out[2 · slot] and out[2 · slot + 1]: one slot per step of an epoch
// (or per chunk of an evaluation), read back once at its end.
@compute @workgroup_size(GROUP)
fn loss_sum(@builtin(local_invocation_index) lid: u32) {
    var sum = vec2<f32>(0.0, 0.0);
    for (var r = lid; r < shape.rows; r += GROUP) {
        sum += vec2<f32>(input[2u * r], input[2u * r + 1u]);
    }
    pair[lid] = sum;
    workgroupBarrier();
    for (var half = GROUP / 2u; half > 0u; half /= 2u) {
        if lid < half {
            pair[lid] += pair[lid + half];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        let at = 2u * step.slot;
        out[at] = select(0.0, out[at], shape.accumulate != 0u) + pair[0].x;
        out[at + 1u] = select(0.0, out[at + 1u], shape.accumulate != 0u) + pair[0].y;
    }
}

const NORM_GROUP: u32 = 256u;
var<workgroup> squares: array<f32, NORM_GROUP>;

// Sums every invocation's `value` into squares[0] by a fixed tree.
fn tree_sum(lid: u32, value: f32) {
    squares[lid] = value;
    workgroupBarrier();
    for (var half = NORM_GROUP / 2u; half > 0u; half /= 2u) {
        if lid < half {
            squares[lid] += squares[lid + half];
        }
        workgroupBarrier();
    }
}

// First pass of the gradient's global L2 norm: workgroup w sums g² over
// elements w·256 + lid, stepping by cols·256 (shape.rows elements,
// shape.cols workgroups), into out[out_offset + w]; a buffer larger than
// one binding is summed piece by piece, each into its own partials. The
// optimizer adds them up (`update_clipped` in optimizer.wgsl). A fixed
// order: deterministic.
@compute @workgroup_size(NORM_GROUP)
fn sum_squares(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let base = wid.z * shape.input_stride;
    var sum = 0.0;
    for (var i = wid.x * NORM_GROUP + lid; i < shape.rows; i += shape.cols * NORM_GROUP) {
        sum += input[base + i] * input[base + i];
    }
    tree_sum(lid, sum);
    if lid == 0u {
        out[wid.z * shape.out_stride + shape.out_offset + wid.x] = squares[0];
    }
}

// Per-layer norms for the training metrics: workgroup (l, k) writes
// √(Σ x²) over layer l's weight and bias ranges of the gradients (k = 0) or
// the parameters (k = 1) of the bound piece (`ParamLayout::pieces`) into
// out[(step.slot · layers + first + l) · 2 + k], where shape.cols = layers
// of the network and shape.out_offset = first, the piece's first layer.
// ranges[4l ..]: weight offset, weight length, bias offset, bias length,
// within the piece. `input` = the gradients.
@group(0) @binding(4) var<storage, read> norm_params: array<f32>;
@group(0) @binding(5) var<storage, read> norm_ranges: array<u32>;

@compute @workgroup_size(NORM_GROUP)
fn layer_norms(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let l = wid.x;
    var sum = 0.0;
    for (var part = 0u; part < 2u; part++) {
        let start = wid.z * shape.input_stride + norm_ranges[4u * l + 2u * part];
        let len = norm_ranges[4u * l + 2u * part + 1u];
        // Four elements an iteration: a layer of 33.5 million weights (a
        // whole 128 MiB binding) stays within lavapipe's 65 535 loop
        // iterations (src/gpu/dispatch.rs).
        var i = lid;
        for (; i + 3u * NORM_GROUP < len; i += 4u * NORM_GROUP) {
            var v: vec4<f32>;
            if wid.y == 0u {
                v = vec4<f32>(input[start + i], input[start + i + NORM_GROUP], input[start + i + 2u * NORM_GROUP], input[start + i + 3u * NORM_GROUP]);
            } else {
                v = vec4<f32>(norm_params[start + i], norm_params[start + i + NORM_GROUP], norm_params[start + i + 2u * NORM_GROUP], norm_params[start + i + 3u * NORM_GROUP]);
            }
            sum += dot(v, v);
        }
        for (; i < len; i += NORM_GROUP) {
            var v: f32;
            if wid.y == 0u {
                v = input[start + i];
            } else {
                v = norm_params[start + i];
            }
            sum += v * v;
        }
    }
    tree_sum(lid, sum);
    if lid == 0u {
        let network = step.slot * max(shape.members, 1u) + wid.z;
        out[(network * shape.cols + shape.out_offset + l) * 2u + wid.y] = sqrt(squares[0]);
    }
}
