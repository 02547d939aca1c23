// Normalisation layers, forward beside backward: torch.nn.LayerNorm over
// each row and torch.nn.BatchNorm1d over each column of a pass's rows,
// with their affine γ (weight) and β (bias). CPU twin: src/cpu/norm.rs,
// whose header gives the formulas:
//
//   forward:   μ = Σx / n   σ² = Σ(x − μ)² / n   r = 1 / √(σ² + eps)
//              x̂ = (x − μ) · r                  y = γ x̂ + β
//   backward:  dβ = Σ dy    dγ = Σ dy · x̂       g = dy · γ
//              dx = r / n · (n g − Σ g − x̂ Σ(g · x̂))
//
// LayerNorm's groups are rows (a workgroup a row: its `width` values
// summed by the workgroup's threads, then a tree in workgroup memory).
// BatchNorm's groups are columns over the pass's rows, which may be
// hundreds of thousands: a column's sums are a two-pass reduction.
// `column_partials` gives each workgroup 64 columns of one chunk of
// CHUNK_ROWS rows (4 lanes a column, each looping over a quarter of the
// chunk) and keeps the chunk's mean and Σ(x − mean)², both about the
// chunk's own mean; `batch_stats` (a thread a column) combines the chunks
// in order by Chan's formula. So no invocation loops more than
// CHUNK_ROWS / 4 times in the first pass nor more than rows / CHUNK_ROWS
// (2 048 at the most rows a pass holds) in the second, far from
// lavapipe's 65 535 iterations (docs/DESIGN.md, "What keeps the GPU path
// fast"); the first pass has columns/64 × rows/256 workgroups to spread
// over a GPU's cores however narrow the layer; and every value is read
// twice from memory, not four times as a plain two-pass mean then
// variance over the whole column would. The gradients' column sums
// (dγ, dβ) run the same two passes (`affine_partials`, `affine_finish`).

// The twin of `NormShape` in src/gpu/uniforms.rs.
struct NormShape {
    rows: u32,
    width: u32,
    // Chunks of CHUNK_ROWS rows (the column reductions' first pass).
    chunks: u32,
    // 1: a training pass (BatchNorm: the batch's statistics, and the
    // running ones move); 0: evaluation (BatchNorm: the running ones).
    train: u32,
    // 1: dγ, dβ are added to the gradients there (a step's later passes).
    accumulate: u32,
    eps: f32,
    momentum: f32,
    // rows / (rows − 1), computed in f64 by the host: the unbiased variance.
    unbiased: f32,
}

const CHUNK_ROWS: u32 = 256u;
const GROUP: u32 = 256u;

@group(0) @binding(0) var<uniform> shape: NormShape;
// The layer's input x (forward) or dL/dy (backward).
@group(0) @binding(1) var<storage, read> input: array<f32>;
// γ then β, `width` each.
@group(0) @binding(2) var<storage, read> affine: array<f32>;
// x̂, kept by the forward pass for the backward.
@group(0) @binding(3) var<storage, read_write> normalized: array<f32>;
// LayerNorm: each row's r. BatchNorm: each column's μ, then each column's r.
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
// y (forward) or dL/dx (backward).
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
// The column reductions' chunk partials, two values a chunk and column.
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;
// What outlives the pass: BatchNorm's running mean then running variance
// (`width` each; `batch_stats`), or the gradients of γ then β
// (`affine_finish`).
@group(0) @binding(7) var<storage, read_write> kept: array<f32>;
// Σ dy then Σ dy·x̂ of this pass, each column's (BatchNorm's backward).
@group(0) @binding(8) var<storage, read_write> sums: array<f32>;

var<workgroup> tree: array<f32, GROUP>;
var<workgroup> tree2: array<f32, GROUP>;

// The sum of every thread's `v` (and `w`), in every thread.
fn workgroup_sum2(lid: u32, v: f32, w: f32) -> vec2<f32> {
    tree[lid] = v;
    tree2[lid] = w;
    workgroupBarrier();
    for (var half = GROUP / 2u; half > 0u; half /= 2u) {
        if lid < half {
            tree[lid] += tree[lid + half];
            tree2[lid] += tree2[lid + half];
        }
        workgroupBarrier();
    }
    let total = vec2<f32>(tree[0], tree2[0]);
    workgroupBarrier();
    return total;
}

// The row this workgroup normalises (grids past 65 535 rows fold into y).
fn row_of(wid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wid.y * groups.x + wid.x;
}

// LayerNorm forward, a workgroup a row: μ, then σ² about it (two passes,
// as the CPU), x̂ and y.
@compute @workgroup_size(GROUP)
fn layer_norm_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, groups);
    if row >= shape.rows {
        return;
    }
    let w = shape.width;
    let base = row * w;
    let n = f32(w);
    var s = 0.0;
    for (var j = lid; j < w; j += GROUP) {
        s += input[base + j];
    }
    let mean = workgroup_sum2(lid, s, 0.0).x / n;
    var q = 0.0;
    for (var j = lid; j < w; j += GROUP) {
        let d = input[base + j] - mean;
        q += d * d;
    }
    let rstd = 1.0 / sqrt(workgroup_sum2(lid, q, 0.0).x / n + shape.eps);
    if lid == 0u {
        stats[row] = rstd;
    }
    for (var j = lid; j < w; j += GROUP) {
        let xhat = (input[base + j] - mean) * rstd;
        normalized[base + j] = xhat;
        out[base + j] = affine[j] * xhat + affine[w + j];
    }
}

// LayerNorm backward, a workgroup a row: Σ g and Σ g·x̂ over the row, then dx.
@compute @workgroup_size(GROUP)
fn layer_norm_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, groups);
    if row >= shape.rows {
        return;
    }
    let w = shape.width;
    let base = row * w;
    let n = f32(w);
    var sg = 0.0;
    var sgx = 0.0;
    for (var j = lid; j < w; j += GROUP) {
        let g = input[base + j] * affine[j];
        sg += g;
        sgx += g * normalized[base + j];
    }
    let total = workgroup_sum2(lid, sg, sgx);
    let rstd = stats[row];
    for (var j = lid; j < w; j += GROUP) {
        let g = input[base + j] * affine[j];
        out[base + j] = rstd / n * (n * g - total.x - normalized[base + j] * total.y);
    }
}

// The chunk and column of this invocation of a column reduction's first
// pass (64 columns × 4 lanes a workgroup, a chunk a workgroup along y),
// and its lane.
struct ColumnLane {
    col: u32,
    lane: u32,
    first: u32,
    last: u32,
}

fn column_lane(wid: vec3<u32>, lid: u32) -> ColumnLane {
    let first = wid.y * CHUNK_ROWS;
    return ColumnLane(wid.x * 64u + lid % 64u, lid / 64u, first, min(first + CHUNK_ROWS, shape.rows));
}

// Adds lane values of the four lanes of each column: lane 0 gets the sum.
fn lanes_sum(lid: u32, v: f32) -> f32 {
    tree[lid] = v;
    workgroupBarrier();
    var total = 0.0;
    if lid < 64u {
        total = tree[lid] + tree[lid + 64u] + tree[lid + 128u] + tree[lid + 192u];
    }
    workgroupBarrier();
    return total;
}

// BatchNorm forward, first pass: each chunk's column means and Σ(x − mean)².
@compute @workgroup_size(GROUP)
fn column_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = column_lane(wid, lid);
    let inside = c.col < shape.width;
    let count = f32(c.last - c.first);
    var s = 0.0;
    if inside {
        for (var r = c.first + c.lane; r < c.last; r += 4u) {
            s += input[r * shape.width + c.col];
        }
    }
    // Every lane reads the chunk's mean from lane 0's slot.
    let total = lanes_sum(lid, s);
    if lid < 64u {
        tree2[lid] = total / count;
    }
    workgroupBarrier();
    let mean = tree2[lid % 64u];
    var q = 0.0;
    if inside {
        for (var r = c.first + c.lane; r < c.last; r += 4u) {
            let d = input[r * shape.width + c.col] - mean;
            q += d * d;
        }
    }
    let m2 = lanes_sum(lid, q);
    if lid < 64u && inside {
        let at = (wid.y * shape.width + c.col) * 2u;
        partials[at] = mean;
        partials[at + 1u] = m2;
    }
}

// BatchNorm forward, second pass (a thread a column): a training pass
// combines the chunks in order (Chan et al.: n = na + nb, δ = μb − μa,
// μ = μa + δ nb / n, M2 = M2a + M2b + δ² na nb / n) into the batch's μ
// and r, and moves the running statistics; an evaluation pass takes μ and
// r from the running statistics.
@compute @workgroup_size(64)
fn batch_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let col = flat_index(wid, groups, lid, 64u);
    let w = shape.width;
    if col >= w {
        return;
    }
    if shape.train == 0u {
        stats[col] = kept[col];
        stats[w + col] = 1.0 / sqrt(kept[w + col] + shape.eps);
        return;
    }
    var n = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    for (var chunk = 0u; chunk < shape.chunks; chunk++) {
        let nb = f32(min(CHUNK_ROWS, shape.rows - chunk * CHUNK_ROWS));
        let at = (chunk * w + col) * 2u;
        let total = n + nb;
        let delta = partials[at] - mean;
        mean += delta * nb / total;
        m2 += partials[at + 1u] + delta * delta * n * nb / total;
        n = total;
    }
    let var_biased = m2 / n;
    stats[col] = mean;
    stats[w + col] = 1.0 / sqrt(var_biased + shape.eps);
    let m = shape.momentum;
    kept[col] = (1.0 - m) * kept[col] + m * mean;
    kept[w + col] = (1.0 - m) * kept[w + col] + m * (var_biased * shape.unbiased);
}

// BatchNorm forward, elementwise: x̂ = (x − μ) r, y = γ x̂ + β.
@compute @workgroup_size(GROUP)
fn batch_norm_apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, groups, lid, GROUP);
    let w = shape.width;
    if i >= shape.rows * w {
        return;
    }
    let j = i % w;
    let xhat = (input[i] - stats[j]) * stats[w + j];
    if shape.train != 0u {
        normalized[i] = xhat;
    }
    out[i] = affine[j] * xhat + affine[w + j];
}

// The gradients' column sums, first pass: each chunk's Σ dy and Σ dy·x̂.
@compute @workgroup_size(GROUP)
fn affine_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = column_lane(wid, lid);
    var s = 0.0;
    var sx = 0.0;
    if c.col < shape.width {
        for (var r = c.first + c.lane; r < c.last; r += 4u) {
            let at = r * shape.width + c.col;
            s += input[at];
            sx += input[at] * normalized[at];
        }
    }
    let ds = lanes_sum(lid, s);
    let dsx = lanes_sum(lid, sx);
    if lid < 64u && c.col < shape.width {
        let at = (wid.y * shape.width + c.col) * 2u;
        partials[at] = ds;
        partials[at + 1u] = dsx;
    }
}

// The gradients' column sums, second pass (a thread a column): the chunks
// in order, into dγ, dβ (`kept`: γ's, then β's) and into `sums` for BatchNorm's dx.
@compute @workgroup_size(64)
fn affine_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let col = flat_index(wid, groups, lid, 64u);
    let w = shape.width;
    if col >= w {
        return;
    }
    var s = 0.0;
    var sx = 0.0;
    for (var chunk = 0u; chunk < shape.chunks; chunk++) {
        let at = (chunk * w + col) * 2u;
        s += partials[at];
        sx += partials[at + 1u];
    }
    sums[col] = s;
    sums[w + col] = sx;
    if shape.accumulate != 0u {
        kept[col] += sx;
        kept[w + col] += s;
    } else {
        kept[col] = sx;
        kept[w + col] = s;
    }
}

// BatchNorm backward, elementwise (the batch's statistics): Σ g = γ Σ dy
// and Σ g x̂ = γ Σ dy x̂ from `affine_finish`'s sums.
@compute @workgroup_size(GROUP)
fn batch_norm_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, groups, lid, GROUP);
    let w = shape.width;
    if i >= shape.rows * w {
        return;
    }
    let j = i % w;
    let n = f32(shape.rows);
    let gamma = affine[j];
    let g = input[i] * gamma;
    out[i] = stats[w + j] / n * (n * g - sums[j] * gamma - normalized[i] * sums[w + j] * gamma);
}
