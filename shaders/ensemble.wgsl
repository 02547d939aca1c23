// TabM's steps besides its shared products (docs/DESIGN.md "Layer
// kinds"), over activations `[k, rows, width]`, a member's rows together:
// one dispatch for every member, the member part of the flat index. The
// CPU twins: src/cpu/ensemble.rs (BatchEnsemble), src/cpu/members_layers.rs
// (the scaling, the view, the ensemble's mean), `drop_out` in
// src/cpu/sequence.rs (a member's dropout columns past the others').
//
//   member_scale         out = a_m ⊙ b_m (⊙ dropout ⊙ f'(z)): the view (a
//                        shared, no b), tabm-mini's scaling, X ⊙ r, dZ ⊙ s,
//                        and dX̃ ⊙ r into the layer before's dZ
//   ensemble_epilogue    Z = U ⊙ s_m + b_m, A = f(Z) ⊙ dropout
//   member_column_sums   each member's Σ_rows a (⊙ b): db, ds, dr, d scale
//   ensemble_mean        the ensemble's output of the members'

// The twin of `EnsembleShape` in src/gpu/uniforms.rs.
struct EnsembleShape {
    members: u32,
    // Rows a member: the pass's rows.
    rows: u32,
    width: u32,
    activation: u32,
    slope: f32,
    // Dropout of the layer whose A or dZ this forms (threshold 0: off), as
    // `MatmulShape`'s; a member's columns are offset by member × width.
    dropout_threshold: u32,
    dropout_scale: f32,
    dropout_seed: u32,
    dropout_layer: u32,
    // Rows into the batch where this pass starts (micro-batches).
    row_offset: u32,
    // 1: every member reads the one input `[rows, width]` (the view; the
    // sums' b).
    shared_input: u32,
    // 1: `b` is read (a member's scaling; the sums' second factor).
    has_b: u32,
    // 1: the sums add to those in `out`.
    accumulate: u32,
    // The ensemble's mean (MEAN_*).
    mean: u32,
    // Where a member's scaling starts in `b` and the sums in `out` (s sits
    // past r in one binding: a binding's offset keeps the device's
    // alignment).
    b_offset: u32,
    out_offset: u32,
}

@group(0) @binding(0) var<uniform> shape: EnsembleShape;
@group(0) @binding(1) var<uniform> step: StepUniform;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read> c: array<f32>;
// The values f' is taken at.
@group(0) @binding(5) var<storage, read> z: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read_write> out2: array<f32>;

const GROUP: u32 = 256u;

fn per_member() -> u32 {
    return shape.rows * shape.width;
}

// Element i's member.
fn member_of(i: u32) -> u32 {
    return i / per_member();
}

// The dropout factor of element i of `[k, rows, width]`: 1 when off.
fn member_dropout(i: u32) -> f32 {
    if shape.dropout_threshold == 0u {
        return 1.0;
    }
    let at = i % per_member();
    let row = shape.row_offset + at / shape.width;
    let column = member_of(i) * shape.width + at % shape.width;
    return dropout_factor(shape.dropout_threshold, shape.dropout_scale, shape.dropout_seed, step.t, shape.dropout_layer, row, column);
}

// out = a_m ⊙ b_m ⊙ dropout ⊙ f'(z), each factor where the shape asks.
@compute @workgroup_size(GROUP)
fn member_scale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, groups, lid, GROUP);
    if i >= shape.members * per_member() {
        return;
    }
    var v = a[select(i, i % per_member(), shape.shared_input != 0u)];
    if shape.has_b != 0u {
        v *= b[shape.b_offset + member_of(i) * shape.width + i % shape.width];
    }
    v *= member_dropout(i);
    if shape.activation != ACTIVATION_IDENTITY {
        v *= activation_derivative(shape.activation, shape.slope, z[i]);
    }
    out[i] = v;
}

// A BatchEnsemble layer after its shared product U (`a`): Z = U ⊙ s_m +
// b_m into `out`, A = f(Z) ⊙ dropout into `out2` (s in `b`, the bias in `c`).
@compute @workgroup_size(GROUP)
fn ensemble_epilogue(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, groups, lid, GROUP);
    if i >= shape.members * per_member() {
        return;
    }
    let at = member_of(i) * shape.width + i % shape.width;
    let zi = a[i] * b[shape.b_offset + at] + c[at];
    out[i] = zi;
    out2[i] = activation_forward(shape.activation, shape.slope, zi) * member_dropout(i);
}

// out[m, j] (+)= Σ_rows a[m, row, j] (⊙ b[m, row, j], or with
// `shared_input` b[row, j]: the view's), rows in order (as the CPU adds
// them): a thread a member's column.
@compute @workgroup_size(64)
fn member_column_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let j = flat_index(wid, groups, lid, 64u);
    if j >= shape.members * shape.width {
        return;
    }
    let m = j / shape.width;
    var at = m * per_member() + j % shape.width;
    var sum = 0.0;
    for (var row = 0u; row < shape.rows; row++) {
        var v = a[at];
        if shape.has_b != 0u {
            v *= b[select(at, at % per_member(), shape.shared_input != 0u)];
        }
        sum += v;
        at += shape.width;
    }
    let o = shape.out_offset + j;
    if shape.accumulate != 0u {
        sum += out[o];
    }
    out[o] = sum;
}

// log(1 + eˣ), without overflow.
fn softplus(x: f32) -> f32 {
    if x > 0.0 {
        return x + log(1.0 + exp(-x));
    }
    return log(1.0 + exp(x));
}

// log Σ_j exp(a[m, row, j]): member m's row's log-sum-exp.
fn row_log_sum_exp(m: u32, row: u32) -> f32 {
    let start = m * per_member() + row * shape.width;
    var most = a[start];
    for (var j = 1u; j < shape.width; j++) {
        most = max(most, a[start + j]);
    }
    var sum = 0.0;
    for (var j = 0u; j < shape.width; j++) {
        sum += exp(a[start + j] - most);
    }
    return most + log(sum);
}

// The member's value of element `at` (of `[rows, width]`) the mean
// averages in the log domain: its log-softmax (MEAN_PROBABILITIES), log σ
// of ±z (MEAN_SIGMOID, `sign` ±1).
fn member_log(m: u32, at: u32, sign: f32) -> f32 {
    let v = a[m * per_member() + at];
    if shape.mean == MEAN_PROBABILITIES {
        return v - row_log_sum_exp(m, at / shape.width);
    }
    return -softplus(-sign * v);
}

// log Σ_m exp(member_log(m, at, sign)), by the largest.
fn members_log_sum_exp(at: u32, sign: f32) -> f32 {
    var most = member_log(0u, at, sign);
    for (var m = 1u; m < shape.members; m++) {
        most = max(most, member_log(m, at, sign));
    }
    var sum = 0.0;
    for (var m = 0u; m < shape.members; m++) {
        sum += exp(member_log(m, at, sign) - most);
    }
    return most + log(sum);
}

// The ensemble's output `[rows, width]` of the members' (`a`): log of the
// mean softmax (its softmax is the mean), the logit of the mean sigmoid
// (log mean σ(z) − log mean σ(−z)), or the mean.
@compute @workgroup_size(GROUP)
fn ensemble_mean(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let at = flat_index(wid, groups, lid, GROUP);
    if at >= per_member() {
        return;
    }
    let k = f32(shape.members);
    if shape.mean == MEAN_VALUES {
        var sum = 0.0;
        for (var m = 0u; m < shape.members; m++) {
            sum += a[m * per_member() + at];
        }
        out[at] = sum / k;
    } else if shape.mean == MEAN_PROBABILITIES {
        out[at] = members_log_sum_exp(at, 1.0) - log(k);
    } else {
        out[at] = members_log_sum_exp(at, 1.0) - members_log_sum_exp(at, -1.0);
    }
}
