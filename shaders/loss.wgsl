// Loss value and gradient with respect to the network output, one thread a
// row, chained through the output layer's activation: dZ = dL/dA ⊙ f'(Z);
// for a small batch (`SUMMED_LOSS_MAX` in src/gpu/dispatch.rs) with the
// batch's sum in the same dispatch (`loss_summed`).
// CPU twin: `Loss::forward_backward` and `Loss::correct` in src/loss.rs.
// Codes: 0 mse, 1 half_mse, 2 cross_entropy (softmax fused), 3
// bce_with_logits (sigmoid fused).

// The twin of `LossShape` in src/gpu/uniforms.rs.
struct LossShape {
    rows: u32,
    width: u32,
    loss: u32,
    activation: u32,
    slope: f32,
    // 1 / (rows · width), or 1 / rows for cross-entropy.
    inv_norm: f32,
    // Whether `loss_summed` adds the batch's sum to the step's result slot
    // (every pass of a step but the first) or writes it.
    accumulate: u32,
    // Members (`loss_members`): how many (the dispatch's z).
    members: u32,
    // TabM: the targets' rows, which each member's block of stacked rows
    // reads again (row % target_rows; 0: one a row).
    target_rows: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> shape: LossShape;
@group(0) @binding(1) var<storage, read> z: array<f32>;        // output layer Z
@group(0) @binding(2) var<storage, read> output: array<f32>;   // output layer A = f(Z)
@group(0) @binding(3) var<storage, read> targets: array<u32>;  // class indices, or f32 bits
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;
// Per row: [loss contribution to the batch mean, number correct].
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;
// Per step slot: [the batch's loss, number correct] (`loss_summed`, and
// `loss_sum` in reduce.wgsl).
@group(0) @binding(6) var<storage, read_write> results: array<f32>;
@group(0) @binding(7) var<uniform> step: StepUniform;
// Members: each member's step (`MEMBER_STEP_VEC4S`) and each batch row's
// weight ([members][rows]).
@group(0) @binding(8) var<storage, read> member_steps: array<vec4<u32>>;
@group(0) @binding(9) var<storage, read> weight_batch: array<f32>;

// What the current row's loss and gradient are scaled by: the batch's
// 1 / (rows · width) (1 / rows for cross-entropy), and for a members run
// the member's, times the row's weight.
var<private> norm: f32;

// Cross-entropy's gradient at element `at` of a row whose outputs have
// maximum `row_max` and Σ exp(o − row_max) = `denom`: (softmax − [label])
// over the batch, through f'(Z). Both loss kernels write it.
fn cross_entropy_grad(at: u32, row_max: f32, denom: f32, is_label: bool) {
    var g = exp(output[at] - row_max) / denom * norm;
    if is_label {
        g -= norm;
    }
    grad[at] = g * activation_derivative(shape.activation, shape.slope, z[at]);
}

// The row of the targets that output row `row` reads: itself, or for
// TabM's stacked members the batch row it repeats.
fn target_row(row: u32) -> u32 {
    if shape.target_rows == 0u {
        return row;
    }
    return row % shape.target_rows;
}

// The losses on target values (MSE, half MSE, BCE with logits) at element
// `at`, target `target_at`: writes its gradient through f'(Z) and returns
// its term of the row's loss and, for BCE, whether it is right. Both loss
// kernels sum these.
fn value_element(at: u32, target_at: u32) -> vec2<f32> {
    let o = output[at];
    let y = bitcast<f32>(targets[target_at]);
    var term: vec2<f32>;
    var g: f32;
    if shape.loss == LOSS_BCE_WITH_LOGITS {
        // log(1 + e^−|o|): WGSL has no log1p, which the CPU (`ln_1p`) uses;
        // in f32 the two differ by less than an ulp of the total, since
        // e^−|o| ≤ 1 and the max term dominates.
        term = vec2<f32>(max(o, 0.0) - o * y + log(1.0 + exp(-abs(o))), select(0.0, 1.0, (o > 0.0) == (y > 0.5)));
        g = (sigmoid(o) - y) * norm;
    } else {
        let d = o - y;
        term = vec2<f32>(d * d, 0.0);
        g = select(d, 2.0 * d, shape.loss == LOSS_MSE) * norm;
    }
    grad[at] = g * activation_derivative(shape.activation, shape.slope, z[at]);
    return term;
}

// Row `row`'s loss and gradient, a thread's work: writes the row's dZ and
// returns [its loss contribution to the batch mean, whether it is right].
fn row_loss(row: u32) -> vec2<f32> {
    let w = shape.width;
    let base = row * w;
    var total = 0.0;
    var correct = 0.0;
    if shape.loss == LOSS_CROSS_ENTROPY {
        let label = targets[target_row(row)];
        var max_v = output[base];
        var best = 0u;
        for (var j = 1u; j < w; j++) {
            if output[base + j] > max_v {
                max_v = output[base + j];
                best = j;
            }
        }
        var denom = 0.0;
        for (var j = 0u; j < w; j++) {
            denom += exp(output[base + j] - max_v);
        }
        total = log(denom) - (output[base + label] - max_v);
        for (var j = 0u; j < w; j++) {
            cross_entropy_grad(base + j, max_v, denom, j == label);
        }
        correct = select(0.0, 1.0, best == label);
    } else {
        for (var j = 0u; j < w; j++) {
            let term = value_element(base + j, target_row(row) * w + j);
            total += term.x;
            correct += term.y;
        }
        if shape.loss == LOSS_HALF_MSE {
            total *= 0.5;
        }
    }
    return vec2<f32>(total * norm, correct);
}

const GROUP: u32 = 64u;

@compute @workgroup_size(GROUP)
fn loss(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = flat_index(wid, groups, lid, GROUP);
    if row >= shape.rows {
        return;
    }
    norm = shape.inv_norm;
    let stat = row_loss(row);
    stats[2u * row] = stat.x;
    stats[2u * row + 1u] = stat.y;
}

// The same and the batch's sum in one workgroup, for a small batch: thread
// lid takes rows lid, lid + 256, ... and adds their [loss, correct] as
// `loss_sum` in reduce.wgsl adds the stats `loss` writes, in the same
// order, then the same tree: one dispatch fewer, the same sums (but where
// a GPU contracts a row's `total · inv_norm` into the sum).
const SUM_GROUP: u32 = 256u;
var<workgroup> pair: array<vec2<f32>, SUM_GROUP>;

@compute @workgroup_size(SUM_GROUP)
fn loss_summed(@builtin(local_invocation_index) lid: u32) {
    norm = shape.inv_norm;
    var sum = vec2<f32>(0.0, 0.0);
    for (var r = lid; r < shape.rows; r += SUM_GROUP) {
        sum += row_loss(r);
    }
    pair[lid] = sum;
    workgroupBarrier();
    for (var half = SUM_GROUP / 2u; half > 0u; half /= 2u) {
        if lid < half {
            pair[lid] += pair[lid + half];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        let at = 2u * step.slot;
        results[at] = select(0.0, results[at], shape.accumulate != 0u) + pair[0].x;
        results[at + 1u] = select(0.0, results[at + 1u], shape.accumulate != 0u) + pair[0].y;
    }
}

// The same for wide output layers (`WIDE_LOSS_MIN` in src/gpu/dispatch.rs):
// a workgroup a row, each thread striding over the row's columns, the
// partial results combined by fixed trees (deterministic). A thread a row
// loops three times over the row, which on lavapipe ends past 21 845
// columns (its shader loop budget) and on a GPU leaves the device idle.
const WIDE: u32 = 64u;
const NONE: u32 = 0xffffffffu;
var<workgroup> wide_max: array<f32, WIDE>;
var<workgroup> wide_arg: array<u32, WIDE>;
var<workgroup> wide_sum: array<vec2<f32>, WIDE>;

// Sums every thread's `value` into wide_sum[0] by a fixed tree.
fn wide_tree_sum(lid: u32, value: vec2<f32>) {
    wide_sum[lid] = value;
    workgroupBarrier();
    for (var half = WIDE / 2u; half > 0u; half /= 2u) {
        if lid < half {
            wide_sum[lid] += wide_sum[lid + half];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(WIDE)
fn loss_wide(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    // The same for every thread of the workgroup: the barriers below stay
    // in uniform control flow.
    let row = wid.y * groups.x + wid.x;
    if row >= shape.rows {
        return;
    }
    norm = shape.inv_norm;
    let w = shape.width;
    let base = row * w;
    var total = 0.0;
    var correct = 0.0;
    if shape.loss == LOSS_CROSS_ENTROPY {
        // The row's maximum and its first column, as the thread-a-row
        // kernel and the CPU find it (ties go to the lower column).
        var max_v = 0.0;
        var best = NONE;
        for (var j = lid; j < w; j += WIDE) {
            if best == NONE || output[base + j] > max_v {
                max_v = output[base + j];
                best = j;
            }
        }
        wide_max[lid] = max_v;
        wide_arg[lid] = best;
        workgroupBarrier();
        for (var half = WIDE / 2u; half > 0u; half /= 2u) {
            if lid < half {
                let other = wide_arg[lid + half];
                let mine = wide_arg[lid];
                let larger = wide_max[lid + half] > wide_max[lid];
                let tie_lower = wide_max[lid + half] == wide_max[lid] && other < mine;
                if other != NONE && (mine == NONE || larger || tie_lower) {
                    wide_max[lid] = wide_max[lid + half];
                    wide_arg[lid] = other;
                }
            }
            workgroupBarrier();
        }
        let row_max = wide_max[0];
        best = wide_arg[0];
        var part = 0.0;
        for (var j = lid; j < w; j += WIDE) {
            part += exp(output[base + j] - row_max);
        }
        wide_tree_sum(lid, vec2<f32>(part, 0.0));
        let denom = wide_sum[0].x;
        let label = targets[target_row(row)];
        total = log(denom) - (output[base + label] - row_max);
        for (var j = lid; j < w; j += WIDE) {
            cross_entropy_grad(base + j, row_max, denom, j == label);
        }
        correct = select(0.0, 1.0, best == label);
    } else {
        var part = vec2<f32>(0.0, 0.0);
        for (var j = lid; j < w; j += WIDE) {
            part += value_element(base + j, target_row(row) * w + j);
        }
        wide_tree_sum(lid, part);
        total = wide_sum[0].x;
        correct = wide_sum[0].y;
        if shape.loss == LOSS_HALF_MSE {
            total *= 0.5;
        }
    }
    if lid == 0u {
        stats[2u * row] = total * norm;
        stats[2u * row + 1u] = correct;
    }
}

// Every member's loss and dZ at once, a workgroup a member (z), its
// threads striding over the member's batch rows as `loss_summed`'s do:
// each valid row scaled by the member's `inv_norm` times the row's weight,
// the rows past the member's `rows` given no gradient; the member's sums
// into its result slot, [loss, correct] at 2 · (slot · members + member).
@compute @workgroup_size(SUM_GROUP)
fn loss_members(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let member = wid.z;
    let at = (step.slot * shape.members + member) * MEMBER_STEP_VEC4S;
    let valid = member_steps[at].x;
    let inv_norm = bitcast<f32>(member_steps[at + 1u].z);
    var sum = vec2<f32>(0.0, 0.0);
    for (var r = lid; r < shape.rows; r += SUM_GROUP) {
        let row = member * shape.rows + r;
        if r < valid {
            norm = weight_batch[row] * inv_norm;
            sum += row_loss(row);
        } else {
            for (var j = 0u; j < shape.width; j++) {
                grad[row * shape.width + j] = 0.0;
            }
        }
    }
    pair[lid] = sum;
    workgroupBarrier();
    for (var half = SUM_GROUP / 2u; half > 0u; half /= 2u) {
        if lid < half {
            pair[lid] += pair[lid + half];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        let slot = 2u * (step.slot * shape.members + member);
        results[slot] = pair[0].x;
        results[slot + 1u] = pair[0].y;
    }
}
