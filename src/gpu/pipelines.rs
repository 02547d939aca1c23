//! The compute pipelines, built once when a device opens, and the uniform
//! structs their shaders read.

use super::codes::Epilogue;
use super::dispatch::{SUMMED_LOSS_MAX, WIDE_LOSS_MIN, grid, matmul_grid};
use super::resources::OperandTexture;
use super::shaders::module_source;
use super::tiling::{MatmulChoice, MatmulKind, MatmulTiling};
use super::uniforms::PackShape;
use std::num::NonZeroU64;
use std::sync::OnceLock;

/// Workgroups of the first pass of the gradient norm.
pub(crate) const NORM_GROUPS: u32 = 256;

/// Binding numbers, named as the shaders declare them (`@group(0)
/// @binding(N) var ... name`); the bind groups are built with these names.
pub(crate) mod binding {
    /// Every kernel's `shape` uniform (the optimizer's `rule`).
    pub const SHAPE: u32 = 0;
    /// shaders/matmul.wgsl (the operands `a`, `b` are declared by each
    /// kernel: storage buffers, or textures `ta`, `tb`).
    pub mod matmul {
        pub const A: u32 = 1;
        pub const B: u32 = 2;
        pub const C: u32 = 3;
        pub const AUX: u32 = 4;
        pub const OUT2: u32 = 5;
        pub const STEP: u32 = 6;
        /// The slices' partial products (split-K).
        pub const PARTIALS: u32 = 7;
        /// Each member's dropout (members runs).
        pub const MEMBER_DROPOUT: u32 = 8;
    }
    /// shaders/reduce.wgsl: `column_sums`, `sum_squares`,
    /// `loss_sum` (and `step`), `layer_norms` (and `norm_params`,
    /// `norm_ranges`).
    pub mod reduce {
        pub const INPUT: u32 = 1;
        pub const OUT: u32 = 2;
        pub const STEP: u32 = 3;
        pub const NORM_PARAMS: u32 = 4;
        pub const NORM_RANGES: u32 = 5;
    }
    /// shaders/optimizer.wgsl.
    pub mod optimizer {
        pub const RULE: u32 = 0;
        pub const STEP: u32 = 1;
        pub const PARAMS: u32 = 2;
        pub const GRADS: u32 = 3;
        /// The optimizer state's slots, each bound on its own.
        pub const STATE0: u32 = 4;
        pub const CLIP: u32 = 5;
        pub const STATE1: u32 = 6;
        pub const STATE2: u32 = 7;
        /// Each member's step (members runs; not built for the browser).
        #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
        pub const MEMBER_STEPS: u32 = 8;
    }
    /// shaders/data.wgsl.
    pub mod data {
        pub const STEP: u32 = 1;
        pub const PERM: u32 = 2;
        pub const X: u32 = 3;
        pub const TARGETS: u32 = 4;
        pub const X_BATCH: u32 = 5;
        pub const TARGET_BATCH: u32 = 6;
        /// Members runs: each member's step, its weights of the data's
        /// rows, and the batch's weights.
        #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
        pub const MEMBER_STEPS: u32 = 7;
        #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
        pub const WEIGHTS: u32 = 8;
        #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
        pub const WEIGHT_BATCH: u32 = 9;
    }
    /// shaders/loss.wgsl.
    pub mod loss {
        pub const Z: u32 = 1;
        pub const OUTPUT: u32 = 2;
        pub const TARGETS: u32 = 3;
        pub const GRAD: u32 = 4;
        pub const STATS: u32 = 5;
        pub const RESULTS: u32 = 6;
        pub const STEP: u32 = 7;
        /// Members runs: each member's step and each batch row's weight.
        #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
        pub const MEMBER_STEPS: u32 = 8;
        #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
        pub const WEIGHT_BATCH: u32 = 9;
    }
    /// shaders/pack.wgsl.
    pub mod pack {
        pub const SRC: u32 = 1;
        pub const DST: u32 = 2;
        pub const SRC4: u32 = 3;
    }
}

/// One binding of a bind group layout.
#[derive(Clone, Copy)]
pub(crate) enum Slot {
    Uniform,
    /// A uniform read at a dynamic offset (the per-step parameters).
    StepUniform,
    Read,
    ReadWrite,
    /// An rgba32float texture read by texel fetches (matmul operands).
    Texture,
    /// An rgba32float storage texture written by the pack kernel.
    StorageTexture,
}

/// A pipeline with its explicit bind group layout.
#[derive(Debug)]
pub(crate) struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    /// Number of bindings in the layout.
    pub bindings: usize,
}

/// Every pipeline training uses, compiled once per device (the kernel
/// harness compiles its test-only ones itself).
#[derive(Debug)]
pub(crate) struct Kernels {
    /// Which tiling runs each product.
    pub choice: MatmulChoice,
    /// The matmuls of each of `choice.tilings()`, in that order; they share
    /// their bind group layouts, so one bind group serves every tiling.
    pub matmuls: Vec<MatmulKernels>,
    /// The loss, a thread a row, and a workgroup a row for wide output
    /// layers; for small batches the loss and its sum in one workgroup
    /// ([`Kernels::loss_for`]).
    pub loss: Kernel,
    pub loss_wide: Kernel,
    pub loss_summed: Kernel,
    pub column_sums: Kernel,
    pub loss_sum: Kernel,
    /// The first pass of the gradient's global norm (clipping): partial
    /// sums of g², which `optimizer_clipped` adds up.
    pub sum_squares: Kernel,
    /// Per-layer gradient and weight norms (training metrics).
    pub layer_norms: Kernel,
    /// The optimizer, and the same clipping by the global norm (one bind
    /// group layout for both).
    pub optimizer: Kernel,
    pub optimizer_clipped: Kernel,
    pub gather: Kernel,
    /// A matrix into an operand texture (the texture matmul).
    pub pack: Kernel,
    /// The same for matrices whose rows are whole quads (one vec4 load a
    /// texel).
    pub pack_quads: Kernel,
}

/// The loss kernel of a pass ([`Kernels::loss_for`]).
pub(crate) struct LossKernel<'a> {
    pub kernel: &'a Kernel,
    pub groups: (u32, u32),
    /// Whether it writes the batch's loss into the step's result slot
    /// (else `loss_sum` follows it).
    pub summed: bool,
}

/// Each kernel's bindings, in binding order.
pub(crate) const MATMUL: &[Slot] = &[
    Slot::Uniform,
    Slot::Read,
    Slot::Read,
    Slot::ReadWrite,
    Slot::Read,
    Slot::ReadWrite,
    Slot::StepUniform,
    Slot::ReadWrite,
    Slot::Read,
];
const MATMUL_TEXTURE: &[Slot] = &[
    Slot::Uniform,
    Slot::Texture,
    Slot::Texture,
    Slot::ReadWrite,
    Slot::Read,
    Slot::ReadWrite,
    Slot::StepUniform,
    Slot::ReadWrite,
    Slot::Read,
];
const PACK: &[Slot] = &[Slot::Uniform, Slot::Read, Slot::StorageTexture];
/// Binding 1 is bound too (to the same source) but not read.
const PACK_QUADS: &[Slot] = &[Slot::Uniform, Slot::Read, Slot::StorageTexture, Slot::Read];
#[cfg(feature = "harness")]
pub(crate) const ELEMENTWISE: &[Slot] = &[
    Slot::Uniform,
    Slot::Read,
    Slot::Read,
    Slot::ReadWrite,
    Slot::ReadWrite,
];
const LOSS: &[Slot] = &[
    Slot::Uniform,
    Slot::Read,
    Slot::Read,
    Slot::Read,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::StepUniform,
];
const COLUMN_SUMS: &[Slot] = &[Slot::Uniform, Slot::Read, Slot::ReadWrite];
const LAYER_NORMS: &[Slot] = &[
    Slot::Uniform,
    Slot::Read,
    Slot::ReadWrite,
    Slot::StepUniform,
    Slot::Read,
    Slot::Read,
];
const LOSS_SUM: &[Slot] = &[
    Slot::Uniform,
    Slot::Read,
    Slot::ReadWrite,
    Slot::StepUniform,
];
const OPTIMIZER: &[Slot] = &[
    Slot::Uniform,
    Slot::StepUniform,
    Slot::ReadWrite,
    Slot::Read,
    Slot::ReadWrite,
    Slot::Read,
    Slot::ReadWrite,
    Slot::ReadWrite,
];
const GATHER: &[Slot] = &[
    Slot::Uniform,
    Slot::StepUniform,
    Slot::Read,
    Slot::Read,
    Slot::Read,
    Slot::ReadWrite,
    Slot::ReadWrite,
];

/// A module of common.wgsl and `body`, with `preamble` before both.
pub(crate) fn module(
    device: &wgpu::Device,
    name: &str,
    body: &str,
    preamble: &str,
) -> wgpu::ShaderModule {
    device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(name),
        source: wgpu::ShaderSource::Wgsl(module_source(preamble, body).into()),
    })
}

/// The matmul module of `tiling`.
pub(crate) fn matmul_module(device: &wgpu::Device, tiling: &MatmulTiling) -> wgpu::ShaderModule {
    // SAFETY: every load and store in the matmul kernels is guarded by an
    // explicit check against the shape (load_a, load_b, store_tile, the
    // index and texel clamping of matmul_direct and matmul_texture_*,
    // store_one), and the host binds buffers and textures at least as
    // large as those shapes. Without naga's clamping of each index the
    // inner loop runs about 15 % faster on lavapipe.
    unsafe {
        device.create_shader_module_trusted(
            wgpu::ShaderModuleDescriptor {
                label: Some("matmul"),
                source: wgpu::ShaderSource::Wgsl(tiling.source().into()),
            },
            wgpu::ShaderRuntimeChecks::unchecked(),
        )
    }
}

/// The three matmuls of a training step, compiled for one tiling.
#[derive(Debug)]
pub(crate) struct MatmulKernels {
    pub tiling: MatmulTiling,
    /// C = A · Bᵀ with the bias + activation epilogue (forward).
    pub forward: Kernel,
    /// C = Aᵀ · B (weight gradients).
    weight_grad: Kernel,
    /// C += Aᵀ · B (weight gradients of a step's later passes): compiled
    /// when first needed, since only batches split into passes need it.
    weight_grad_add: OnceLock<Kernel>,
    /// C = (A · B) ⊙ f'(aux) (input gradients through the previous activation).
    pub input_grad: Kernel,
    /// Split-K's finishing dispatch (`matmul_finish`) for each epilogue,
    /// in `Epilogue::ALL`'s order: compiled when first needed.
    finish: [OnceLock<Kernel>; 4],
    /// TabM's members' own layers (W `[k, in, out]`): Z = X · W + b, A =
    /// f(Z) and dZ_prev = (dZ · Wᵀ) ⊙ f'(Z_prev), compiled when first
    /// needed (their dW is `weight_grad` with its operands swapped).
    member_forward: OnceLock<Kernel>,
    member_input_grad: OnceLock<Kernel>,
    module: wgpu::ShaderModule,
    layout: wgpu::BindGroupLayout,
}

impl MatmulKernels {
    fn new(device: &wgpu::Device, tiling: MatmulTiling, layout: &wgpu::BindGroupLayout) -> Self {
        let module = matmul_module(device, &tiling);
        let variant =
            |trans, epilogue| matmul_variant(device, &module, &tiling, trans, epilogue, layout);
        MatmulKernels {
            tiling,
            forward: variant((false, true), Epilogue::BiasActivation),
            weight_grad: variant((true, false), Epilogue::Store),
            weight_grad_add: OnceLock::new(),
            input_grad: variant((false, false), Epilogue::ActivationGrad),
            finish: Default::default(),
            member_forward: OnceLock::new(),
            member_input_grad: OnceLock::new(),
            module: module.clone(),
            layout: layout.clone(),
        }
    }

    /// The weight gradient that stores its product, or with `add` the one
    /// that adds it to what C holds (compiled on first use).
    pub(crate) fn weight_grad(&self, device: &wgpu::Device, add: bool) -> &Kernel {
        if !add {
            return &self.weight_grad;
        }
        self.weight_grad_add.get_or_init(|| {
            let (module, layout) = (&self.module, &self.layout);
            matmul_variant(
                device,
                module,
                &self.tiling,
                (true, false),
                Epilogue::Add,
                layout,
            )
        })
    }
}

impl MatmulKernels {
    /// The forward kernel of TabM's members' own layers, C = A · B with
    /// the bias + activation epilogue (compiled on first use).
    pub(crate) fn member_forward(&self, device: &wgpu::Device) -> &Kernel {
        self.member_forward.get_or_init(|| {
            let (module, layout) = (&self.module, &self.layout);
            let epilogue = Epilogue::BiasActivation;
            matmul_variant(
                device,
                module,
                &self.tiling,
                (false, false),
                epilogue,
                layout,
            )
        })
    }

    /// The input-gradient kernel of TabM's members' own layers, C = (A ·
    /// Bᵀ) ⊙ f'(aux) (compiled on first use).
    pub(crate) fn member_input_grad(&self, device: &wgpu::Device) -> &Kernel {
        self.member_input_grad.get_or_init(|| {
            let (module, layout) = (&self.module, &self.layout);
            let epilogue = Epilogue::ActivationGrad;
            matmul_variant(
                device,
                module,
                &self.tiling,
                (false, true),
                epilogue,
                layout,
            )
        })
    }

    /// The finishing dispatch of a split product with `epilogue` (compiled
    /// on first use).
    pub(crate) fn finish(&self, device: &wgpu::Device, epilogue: Epilogue) -> &Kernel {
        let at = Epilogue::ALL
            .iter()
            .position(|&e| e == epilogue)
            .expect("every epilogue is in ALL");
        self.finish[at].get_or_init(|| {
            let constants = [("EPILOGUE", epilogue as u32 as f64)];
            let layout = (self.layout.clone(), MATMUL.len());
            pipeline_in(device, &self.module, "matmul_finish", layout, &constants)
        })
    }
}

/// The bind group layout of every matmul of `kind`.
pub(crate) fn matmul_layout(device: &wgpu::Device, kind: MatmulKind) -> wgpu::BindGroupLayout {
    let slots = if kind == MatmulKind::Texture {
        MATMUL_TEXTURE
    } else {
        MATMUL
    };
    bind_group_layout(device, "matmul", slots)
}

/// The pipeline of `entry` in `module`, with its bind group layout from
/// `slots` and its override constants.
pub(crate) fn pipeline(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    entry: &str,
    slots: &[Slot],
    constants: &[(&str, f64)],
) -> Kernel {
    let layout = bind_group_layout(device, entry, slots);
    pipeline_in(device, module, entry, (layout, slots.len()), constants)
}

/// The pipeline of `entry` in `module` with a given bind group layout (of
/// so many bindings).
fn pipeline_in(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    entry: &str,
    (layout, bindings): (wgpu::BindGroupLayout, usize),
    constants: &[(&str, f64)],
) -> Kernel {
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(entry),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: Some(&pipeline_layout),
        module,
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants,
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    });
    Kernel {
        pipeline,
        layout,
        bindings,
    }
}

/// The matmul pipeline of `tiling` for one transposition variant and
/// epilogue.
pub(crate) fn matmul_variant(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    tiling: &MatmulTiling,
    (trans_a, trans_b): (bool, bool),
    epilogue: Epilogue,
    layout: &wgpu::BindGroupLayout,
) -> Kernel {
    let constants = [
        ("TRANS_A", trans_a as u32 as f64),
        ("TRANS_B", trans_b as u32 as f64),
        ("EPILOGUE", epilogue as u32 as f64),
    ];
    pipeline_in(
        device,
        module,
        &tiling.entry_point(trans_a, trans_b),
        (layout.clone(), MATMUL.len()),
        &constants,
    )
}

impl Kernels {
    /// Every pipeline training uses, compiled for `device`.
    pub(crate) fn new(device: &wgpu::Device, choice: MatmulChoice) -> Kernels {
        let layout = matmul_layout(device, choice.small.kind);
        let matmuls = choice
            .tilings()
            .into_iter()
            .map(|tiling| MatmulKernels::new(device, tiling, &layout))
            .collect();
        let loss = module(device, "loss", include_str!("../../shaders/loss.wgsl"), "");
        let reduce = module(
            device,
            "reduce",
            include_str!("../../shaders/reduce.wgsl"),
            "",
        );
        let optimizer = module(
            device,
            "optimizer",
            include_str!("../../shaders/optimizer.wgsl"),
            "",
        );
        let data = module(device, "data", include_str!("../../shaders/data.wgsl"), "");
        let pack = module(device, "pack", include_str!("../../shaders/pack.wgsl"), "");
        let build = |module, entry, slots| pipeline(device, module, entry, slots, &[]);
        let update = build(&optimizer, "update", OPTIMIZER);
        let optimizer_clipped = pipeline_in(
            device,
            &optimizer,
            "update_clipped",
            (update.layout.clone(), OPTIMIZER.len()),
            &[],
        );
        Kernels {
            choice,
            matmuls,
            loss: build(&loss, "loss", LOSS),
            loss_wide: build(&loss, "loss_wide", LOSS),
            loss_summed: build(&loss, "loss_summed", LOSS),
            column_sums: build(&reduce, "column_sums", COLUMN_SUMS),
            loss_sum: build(&reduce, "loss_sum", LOSS_SUM),
            sum_squares: build(&reduce, "sum_squares", COLUMN_SUMS),
            layer_norms: build(&reduce, "layer_norms", LAYER_NORMS),
            optimizer: update,
            optimizer_clipped,
            gather: build(&data, "gather", GATHER),
            pack: build(&pack, "pack", PACK),
            pack_quads: build(&pack, "pack_quads", PACK_QUADS),
        }
    }
}

impl Kernels {
    /// The loss kernel for `rows` rows of an output layer `width` wide,
    /// its workgroups, and whether it sums the batch's loss itself
    /// (`SUMMED_LOSS_MAX`) or leaves that to `loss_sum` (`WIDE_LOSS_MIN`).
    pub(crate) fn loss_for(&self, rows: usize, width: usize, max_per_dim: u32) -> LossKernel<'_> {
        let (kernel, groups, summed) = if width >= WIDE_LOSS_MIN {
            (&self.loss_wide, grid(rows as u64, 1, max_per_dim), false)
        } else if rows * width <= SUMMED_LOSS_MAX {
            (&self.loss_summed, (1, 1), true)
        } else {
            (&self.loss, grid(rows as u64, 64, max_per_dim), false)
        };
        LossKernel {
            kernel,
            groups,
            summed,
        }
    }

    /// The workgroups of the column sums of `cols` columns.
    pub(crate) fn column_sums_groups(cols: usize, max_per_dim: u32) -> (u32, u32) {
        grid(cols as u64, 16, max_per_dim)
    }

    /// The matmuls an `m` × `n` product runs with (see
    /// [`MatmulChoice::for_product`]), and its workgroups.
    pub(crate) fn matmul(&self, m: usize, n: usize) -> (&MatmulKernels, (u32, u32)) {
        let kernels = &self.matmuls[self.choice.for_product(m, n)];
        (kernels, matmul_grid(&kernels.tiling, m, n))
    }

    /// The tiling of the products that do not take large tiles (the only
    /// one, off hardware GPUs).
    #[cfg(feature = "harness")]
    pub(crate) fn tiling(&self) -> MatmulTiling {
        self.choice.small
    }

    /// The pack kernel for a texture: `pack_quads` when its rows are whole
    /// quads (`OperandTexture::quads`), else `pack`.
    pub(crate) fn pack_kernel(&self, quads: bool) -> &Kernel {
        if quads { &self.pack_quads } else { &self.pack }
    }

    /// The pack kernel's bind group: `source` (buffer, byte offset, size)
    /// into `texture`, shaped by the `PackShape` at byte `uniform.1` of
    /// `uniform.0`.
    pub(crate) fn pack_group(
        &self,
        device: &wgpu::Device,
        uniform: (&wgpu::Buffer, u64),
        source: (&wgpu::Buffer, u64, Option<std::num::NonZeroU64>),
        texture: &OperandTexture,
    ) -> wgpu::BindGroup {
        let (buffer, offset, size) = source;
        let kernel = self.pack_kernel(texture.quads());
        let source = |binding| wgpu::BindGroupEntry {
            binding,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer,
                offset,
                size,
            }),
        };
        let mut entries = vec![
            wgpu::BindGroupEntry {
                binding: binding::SHAPE,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: uniform.0,
                    offset: uniform.1,
                    size: std::num::NonZeroU64::new(std::mem::size_of::<PackShape>() as u64),
                }),
            },
            source(binding::pack::SRC),
            wgpu::BindGroupEntry {
                binding: binding::pack::DST,
                resource: wgpu::BindingResource::TextureView(&texture.view),
            },
        ];
        if kernel.bindings == 4 {
            entries.push(source(binding::pack::SRC4));
        }
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("pack"),
            layout: &kernel.layout,
            entries: &entries,
        })
    }
}

/// The bindings of every kernel of shaders/norm.wgsl, in order (each
/// kernel reads those it names; the layout is one for all).
const NORM: &[Slot] = &[
    Slot::Uniform,
    Slot::Read,
    Slot::Read,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
];
/// The bindings of shaders/residual.wgsl's kernels.
const RESIDUAL: &[Slot] = &[
    Slot::Uniform,
    Slot::StepUniform,
    Slot::Read,
    Slot::Read,
    Slot::Read,
    Slot::ReadWrite,
];

/// Which kernel a step's dispatch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepKernel {
    LayerNormForward,
    LayerNormBackward,
    ColumnPartials,
    BatchStats,
    BatchNormApply,
    AffinePartials,
    AffineFinish,
    BatchNormBackward,
    ForwardStep,
    GradStep,
}

/// The pipelines of the steps that are not dense layers, compiled only
/// for a network that has them.
#[derive(Debug)]
pub(crate) struct StepKernels {
    norm: Vec<Kernel>,
    residual: Vec<Kernel>,
}

const NORM_ENTRIES: [(StepKernel, &str); 8] = [
    (StepKernel::LayerNormForward, "layer_norm_forward"),
    (StepKernel::LayerNormBackward, "layer_norm_backward"),
    (StepKernel::ColumnPartials, "column_partials"),
    (StepKernel::BatchStats, "batch_stats"),
    (StepKernel::BatchNormApply, "batch_norm_apply"),
    (StepKernel::AffinePartials, "affine_partials"),
    (StepKernel::AffineFinish, "affine_finish"),
    (StepKernel::BatchNormBackward, "batch_norm_backward"),
];

impl StepKernels {
    pub(crate) fn new(device: &wgpu::Device) -> StepKernels {
        let norm = module(device, "norm", include_str!("../../shaders/norm.wgsl"), "");
        let residual = module(
            device,
            "residual",
            include_str!("../../shaders/residual.wgsl"),
            "",
        );
        StepKernels {
            norm: NORM_ENTRIES
                .iter()
                .map(|(_, entry)| pipeline(device, &norm, entry, NORM, &[]))
                .collect(),
            residual: ["forward_step", "grad_step"]
                .iter()
                .map(|entry| pipeline(device, &residual, entry, RESIDUAL, &[]))
                .collect(),
        }
    }

    pub(crate) fn get(&self, kernel: StepKernel) -> &Kernel {
        match kernel {
            StepKernel::ForwardStep => &self.residual[0],
            StepKernel::GradStep => &self.residual[1],
            k => {
                let at = NORM_ENTRIES.iter().position(|(e, _)| *e == k);
                &self.norm[at.expect("every norm kernel is listed")]
            }
        }
    }
}

/// The bindings of shaders/ensemble.wgsl's kernels: the shape, the
/// step's uniform (dropout's t), `a`, `b`, `c`, `z`, `out`, `out2`.
const ENSEMBLE: &[Slot] = &[
    Slot::Uniform,
    Slot::StepUniform,
    Slot::Read,
    Slot::Read,
    Slot::Read,
    Slot::Read,
    Slot::ReadWrite,
    Slot::ReadWrite,
];

/// Which of TabM's kernels (shaders/ensemble.wgsl) a dispatch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnsembleKernel {
    MemberScale,
    EnsembleEpilogue,
    MemberColumnSums,
    EnsembleMean,
}

impl EnsembleKernel {
    const ALL: [EnsembleKernel; 4] = [
        EnsembleKernel::MemberScale,
        EnsembleKernel::EnsembleEpilogue,
        EnsembleKernel::MemberColumnSums,
        EnsembleKernel::EnsembleMean,
    ];

    fn entry(self) -> &'static str {
        match self {
            EnsembleKernel::MemberScale => "member_scale",
            EnsembleKernel::EnsembleEpilogue => "ensemble_epilogue",
            EnsembleKernel::MemberColumnSums => "member_column_sums",
            EnsembleKernel::EnsembleMean => "ensemble_mean",
        }
    }

    /// Threads a workgroup of the kernel runs.
    pub(crate) fn group_size(self) -> u32 {
        match self {
            EnsembleKernel::MemberColumnSums => 64,
            _ => 256,
        }
    }
}

/// The pipelines of TabM's steps, compiled only for a TabM network (and
/// by the kernel harness).
#[derive(Debug)]
pub(crate) struct EnsembleKernels {
    kernels: Vec<Kernel>,
}

impl EnsembleKernels {
    pub(crate) fn new(device: &wgpu::Device) -> EnsembleKernels {
        let source = include_str!("../../shaders/ensemble.wgsl");
        let ensemble = module(device, "ensemble", source, "");
        EnsembleKernels {
            kernels: EnsembleKernel::ALL
                .iter()
                .map(|k| pipeline(device, &ensemble, k.entry(), ENSEMBLE, &[]))
                .collect(),
        }
    }

    pub(crate) fn get(&self, kernel: EnsembleKernel) -> &Kernel {
        let at = EnsembleKernel::ALL.iter().position(|&k| k == kernel);
        &self.kernels[at.expect("every ensemble kernel is listed")]
    }
}

fn bind_group_layout(device: &wgpu::Device, label: &str, slots: &[Slot]) -> wgpu::BindGroupLayout {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = slots
        .iter()
        .enumerate()
        .map(|(i, slot)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: match slot {
                Slot::Uniform | Slot::StepUniform => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: matches!(slot, Slot::StepUniform),
                    min_binding_size: None,
                },
                Slot::Read | Slot::ReadWrite => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: matches!(slot, Slot::Read),
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                Slot::Texture => wgpu::BindingType::Texture {
                    sample_type: wgpu::TextureSampleType::Float { filterable: false },
                    view_dimension: wgpu::TextureViewDimension::D2,
                    multisampled: false,
                },
                Slot::StorageTexture => wgpu::BindingType::StorageTexture {
                    access: wgpu::StorageTextureAccess::WriteOnly,
                    format: wgpu::TextureFormat::Rgba32Float,
                    view_dimension: wgpu::TextureViewDimension::D2,
                },
            },
            count: None,
        })
        .collect();
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(label),
        entries: &entries,
    })
}

/// A buffer binding at `binding`: `size` bytes from `offset` (to the end
/// when `None`).
pub(crate) fn entry(
    binding: u32,
    buffer: &wgpu::Buffer,
    offset: u64,
    size: Option<NonZeroU64>,
) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer,
            offset,
            size,
        }),
    }
}
