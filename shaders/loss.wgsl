// Loss value and gradient with respect to the network output, one thread a
// row, chained through the output layer's activation: dZ = dL/dA ⊙ f'(Z).
// CPU twin: `Loss::forward_backward` and `Loss::correct` in src/loss.rs.
// Codes: 0 mse, 1 half_mse, 2 cross_entropy (softmax fused), 3
// bce_with_logits (sigmoid fused).

// Mirrors `LossShape` in src/gpu/kernels.rs.
struct Shape {
    rows: u32,
    width: u32,
    loss: u32,
    activation: u32,
    slope: f32,
    // 1 / (rows · width), or 1 / rows for cross-entropy.
    inv_norm: f32,
}

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<storage, read> z: array<f32>;        // output layer Z
@group(0) @binding(2) var<storage, read> output: array<f32>;   // output layer A = f(Z)
@group(0) @binding(3) var<storage, read> targets: array<u32>;  // class indices, or f32 bits
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;
// Per row: [loss contribution to the batch mean, number correct].
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;

const GROUP: u32 = 64u;

@compute @workgroup_size(GROUP)
fn loss(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = flat_index(wid, groups, lid, GROUP);
    if row >= shape.rows {
        return;
    }
    let w = shape.width;
    let base = row * w;
    var total = 0.0;
    var correct = 0.0;
    if shape.loss == LOSS_CROSS_ENTROPY {
        let label = targets[row];
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
            var g = exp(output[base + j] - max_v) / denom * shape.inv_norm;
            if j == label {
                g -= shape.inv_norm;
            }
            grad[base + j] = g * activation_derivative(shape.activation, shape.slope, z[base + j]);
        }
        correct = select(0.0, 1.0, best == label);
    } else {
        for (var j = 0u; j < w; j++) {
            let o = output[base + j];
            let y = bitcast<f32>(targets[base + j]);
            var g: f32;
            if shape.loss == LOSS_BCE_WITH_LOGITS {
                // log(1 + e^−|o|): WGSL has no log1p, which the CPU
                // (`ln_1p`) uses; in f32 the two differ by less than an ulp
                // of the total, since e^−|o| ≤ 1 and the max term dominates.
                total += max(o, 0.0) - o * y + log(1.0 + exp(-abs(o)));
                g = (sigmoid(o) - y) * shape.inv_norm;
                correct += select(0.0, 1.0, (o > 0.0) == (y > 0.5));
            } else {
                let d = o - y;
                total += d * d;
                g = select(d, 2.0 * d, shape.loss == LOSS_MSE) * shape.inv_norm;
            }
            grad[base + j] = g * activation_derivative(shape.activation, shape.slope, z[base + j]);
        }
        if shape.loss == LOSS_HALF_MSE {
            total *= 0.5;
        }
    }
    stats[2u * row] = total * shape.inv_norm;
    stats[2u * row + 1u] = correct;
}
