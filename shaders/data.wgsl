// Batch gather from the resident data set through the epoch's permutation:
// the rows perm[batch_start + offset ..][..rows] of x and of the targets,
// copied bit for bit (targets are class indices or f32 bits alike).
// CPU twin: `Dataset::gather` in src/data.rs.

// The twin of `GatherShape` in src/gpu/uniforms.rs.
struct GatherShape {
    rows: u32,
    features: u32,
    target_width: u32,
    // Rows into the batch where this pass starts (micro-batches).
    offset: u32,
    // Members (`gather_members`): each member's order of rows `order_stride`
    // long, the data set's rows, and whether the members weigh rows.
    order_stride: u32,
    data_rows: u32,
    weighted: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> shape: GatherShape;
@group(0) @binding(1) var<uniform> step: StepUniform;
@group(0) @binding(2) var<storage, read> perm: array<u32>;
@group(0) @binding(3) var<storage, read> x: array<u32>;
@group(0) @binding(4) var<storage, read> targets: array<u32>;
@group(0) @binding(5) var<storage, read_write> x_batch: array<u32>;
@group(0) @binding(6) var<storage, read_write> target_batch: array<u32>;

const GROUP: u32 = 256u;

// Members: each member's step (`MEMBER_STEP_VEC4S`), its weights of the
// data set's rows (`weighted`: [members][data_rows]) and its batch's.
@group(0) @binding(7) var<storage, read> member_steps: array<vec4<u32>>;
@group(0) @binding(8) var<storage, read> weights: array<f32>;
@group(0) @binding(9) var<storage, read_write> weight_batch: array<f32>;

@compute @workgroup_size(GROUP)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, groups, lid, GROUP);
    let x_count = shape.rows * shape.features;
    if i < x_count {
        let row = perm[step.batch_start + shape.offset + i / shape.features];
        x_batch[i] = x[row * shape.features + i % shape.features];
        return;
    }
    let j = i - x_count;
    if j < shape.rows * shape.target_width {
        let row = perm[step.batch_start + shape.offset + j / shape.target_width];
        target_batch[j] = targets[row * shape.target_width + j % shape.target_width];
    }
}

// Every member's batch at once (member = z): member m's rows
// `perm[m · order_stride + batch_start ..]`, as many as its step's `rows`
// (its last batch, or none once its epoch is over); the batch's other rows
// are zeros, with weight 0, so that they add nothing to the loss or the
// gradients. `perm` holds each member's order for the call. Each row's
// weight goes to `weight_batch` (1 without weights).
@compute @workgroup_size(GROUP)
fn gather_members(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let member = wid.z;
    let i = flat_index(wid, groups, lid, GROUP);
    let valid = member_steps[(step.slot * groups.z + member) * MEMBER_STEP_VEC4S].x;
    let order = member * shape.order_stride + step.batch_start;
    let x_count = shape.rows * shape.features;
    if i < x_count {
        let r = i / shape.features;
        var v = 0u;
        if r < valid {
            v = x[perm[order + r] * shape.features + i % shape.features];
        }
        x_batch[member * x_count + i] = v;
        return;
    }
    let j = i - x_count;
    let t_count = shape.rows * shape.target_width;
    if j < t_count {
        let r = j / shape.target_width;
        var v = 0u;
        if r < valid {
            v = targets[perm[order + r] * shape.target_width + j % shape.target_width];
        }
        target_batch[member * t_count + j] = v;
        return;
    }
    let r = j - t_count;
    if r < shape.rows {
        var w = 0.0;
        if r < valid {
            w = 1.0;
            if shape.weighted != 0u {
                w = weights[member * shape.data_rows + perm[order + r]];
            }
        }
        weight_batch[member * shape.rows + r] = w;
    }
}
