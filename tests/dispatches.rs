//! The dispatches a GPU step records, counted where they are recorded
//! (`Trainer::profile_steps`), against the recipe of a step written out by
//! hand below: a dispatch added or removed by accident fails here, and a
//! change on purpose updates the recipe (and docs/performance.md,
//! "Dispatches per step").

mod common;

use retroprop::gpu::{MatmulChoice, MatmulKind, adapters};
use retroprop::{Activation, Adam, Dataset, Device, Loss, Mlp, Sgd, Targets, TrainConfig};
use std::collections::BTreeMap;

/// Class labels for `rows` rows of `features` inputs.
fn classes(rows: usize, features: usize, outputs: usize) -> Dataset {
    let x: Vec<f32> = (0..rows * features)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let labels = (0..rows).map(|r| (r % outputs) as u32).collect();
    Dataset::new(x, features, Targets::Classes(labels)).unwrap()
}

/// The kind of kernel this adapter's products run on (`RETROPROP_MATMUL`
/// decides where set): the texture kernel packs its operands into
/// textures first (lavapipe's default); the workgroup-memory kernels (a
/// hardware GPU's) form the bias gradient inside the weight gradient's
/// product.
fn kernel_kind() -> MatmulKind {
    let adapter = adapters()
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{}", common::NO_GPU_HELP));
    MatmulChoice::for_adapter(&adapter).small.kind
}

/// What a step is made of.
struct Step {
    layers: usize,
    /// Passes the batch is split into (micro-batches).
    passes: usize,
    /// Rows × outputs of a pass.
    loss_elements: usize,
    clip_norm: bool,
}

/// The dispatches of a step by kernel, by hand from the recipe in
/// src/gpu/record.rs, for L layers, each product in one chunk of its
/// reduction and the parameters in one binding.
fn recipe(step: &Step, kind: MatmulKind) -> BTreeMap<&'static str, f64> {
    let packs = kind == MatmulKind::Texture;
    let (l, p) = (step.layers as f64, step.passes as f64);
    let mut kernels = BTreeMap::new();
    // Each pass: its rows gathered from the resident data set,
    kernels.insert("gather batch", p);
    // a product a layer forward,
    kernels.insert("forward", l * p);
    // the loss and its gradient dZ, with the sum of the rows' losses in
    // the same dispatch for at most 16 384 rows × outputs, else after it,
    kernels.insert("loss", p);
    if step.loss_elements > 16_384 {
        kernels.insert("loss sum", p);
    }
    // then backward per layer: dW, db and (but the first layer's) dX. The
    // workgroup-memory kernels form db as dW's extra column of ones where
    // that column fits the last column of tiles: every layer here has
    // fewer inputs than a tile is wide (64), so no db dispatch is left.
    kernels.insert("weight grad", l * p);
    if !matches!(kind, MatmulKind::Shared | MatmulKind::SharedVec4) {
        kernels.insert("bias grad", l * p);
    }
    kernels.insert("input grad", (l - 1.0) * p);
    if packs {
        // Texture products: every operand packed first, in each pass: the
        // weights, the input, each hidden activation, and each layer's dZ.
        kernels.insert("pack weights", l * p);
        kernels.insert("pack input", p);
        kernels.insert("pack activations", (l - 1.0) * p);
        kernels.insert("pack dZ", l * p);
    }
    // The update, once a step: the partial sums of the gradient's norm
    // when clipping by it, then the optimizer over the flat parameters,
    // which finishes the norm itself.
    if step.clip_norm {
        kernels.insert("clip: sum of squares", 1.0);
    }
    kernels.insert("optimizer", 1.0);
    kernels
}

#[test]
fn a_step_records_the_dispatches_its_recipe_counts() {
    let kind = kernel_kind();
    let cases: Vec<(&str, Vec<usize>, TrainConfig, usize, Step)> = vec![
        (
            "4-4-2, batch 1, SGD",
            vec![4, 4, 2],
            TrainConfig::default()
                .optimizer(Sgd::default())
                .batch_size(1),
            1,
            Step {
                layers: 2,
                passes: 1,
                loss_elements: 2,
                clip_norm: false,
            },
        ),
        (
            "6-16-12-3, batch 8, Adam, clip by norm",
            vec![6, 16, 12, 3],
            TrainConfig::default()
                .optimizer(Adam::default())
                .clip_grad_norm(1.0)
                .batch_size(8),
            8,
            Step {
                layers: 3,
                passes: 1,
                loss_elements: 24,
                clip_norm: true,
            },
        ),
        (
            "6-16-12-3, batch 8 in passes of 4, Adam",
            vec![6, 16, 12, 3],
            {
                let mut config = TrainConfig::default()
                    .optimizer(Adam::default())
                    .batch_size(8);
                config.gpu.max_rows_per_pass = Some(4);
                config
            },
            8,
            Step {
                layers: 3,
                passes: 2,
                loss_elements: 12,
                clip_norm: false,
            },
        ),
        (
            "6-32-300, batch 64, Adam",
            vec![6, 32, 300],
            TrainConfig::default()
                .optimizer(Adam::default())
                .batch_size(64),
            64,
            Step {
                layers: 2,
                passes: 1,
                loss_elements: 64 * 300,
                clip_norm: false,
            },
        ),
    ];
    for (name, sizes, config, batch, step) in cases {
        let outputs = *sizes.last().unwrap();
        let data = classes(2 * batch, sizes[0], outputs);
        let mlp = Mlp::new(&sizes, Activation::Relu, Activation::Identity).unwrap();
        let config = config.loss(Loss::CrossEntropy);
        let mut trainer = common::trainer(mlp, config, Device::Gpu);
        let profile = trainer
            .profile_steps(&data, 3)
            .unwrap()
            .expect("the GPU backend counts its dispatches");
        assert_eq!(profile.steps, 3, "{name}: steps counted");
        let counted: BTreeMap<&str, f64> = profile.dispatches_by_kernel().into_iter().collect();
        let expected = recipe(&step, kind);
        assert_eq!(
            counted, expected,
            "{name} ({kind:?} kernel): counted (left) and the recipe (right) differ"
        );
        let total: f64 = expected.values().sum();
        assert_eq!(profile.dispatches(), total, "{name}: the total");
    }
}
