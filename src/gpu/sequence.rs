//! A network that is more than dense layers one after another
//! ([`Mlp::kinds`]: normalisations, activations alone, residual skips and
//! adds) on the GPU: the kernels of its other steps (shaders/norm.wgsl,
//! shaders/residual.wgsl), the buffers they read and write, where each
//! dense layer reads its input and sends its input gradient, and the
//! dispatches of each step of a pass. The dense layers are the plain
//! network's products (src/gpu/plan.rs), wired by [`Sequence::input_of`]
//! and [`Sequence::grad_into`]; a plain network has no `Sequence`. The
//! CPU twin is src/cpu/sequence.rs.
//!
//! Buffers: each normalisation, activation and add writes its own output
//! (a dense layer its A; a skip is its input, not a copy). The backward
//! pass carries the gradient of a step's output in a buffer of its own,
//! except between two dense layers, where the second's input gradient
//! forms the first's dZ in its epilogue as in a plain network; a dense
//! layer after any other step takes its dZ from that gradient by
//! `grad_step` (its dropout and f'). An add hands its gradient to the
//! layer before it and keeps it waiting for its skip, whose `grad_step`
//! adds it to the block's.

use super::dispatch::grid;
use super::pipelines::{StepKernel, StepKernels, entry};
use super::profile::Work;
use super::resources::{ParamLayout, Region, storage};
use super::uniforms::{NormShape, ResidualShape, StepUniform, UniformBlocks};
use crate::dropout::Dropout;
use crate::error::{Error, Result};
use crate::model::{LayerKind, Mlp, NormKind};
use std::num::NonZeroU64;

/// Rows a workgroup of a column reduction's first pass sums (the twin of
/// `CHUNK_ROWS` in shaders/norm.wgsl).
const CHUNK_ROWS: usize = 256;

/// Where a step's output (a dense layer's input) lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The pass's input batch.
    Batch,
    /// Dense layer `l`'s A.
    Dense(usize),
    /// Step `i`'s own output buffer.
    Step(usize),
}

/// Where a dense layer's input gradient goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GradInto {
    /// Nowhere: the layer reads the batch.
    Nothing,
    /// Dense layer `l`'s dZ, through its f' and dropout (the plain chain).
    Dense(usize),
    /// The gradient buffer of step `i` (its output's gradient).
    Step(usize),
}

/// A normalisation's buffers.
#[derive(Debug)]
struct NormBuffers {
    /// x̂, rows × width.
    normalized: wgpu::Buffer,
    /// LayerNorm: r of each row. BatchNorm: μ then r of each column.
    stats: wgpu::Buffer,
    /// Σ dy then Σ dy·x̂ of each column.
    sums: wgpu::Buffer,
}

/// What a network that is not plain adds to a GPU backend: its steps'
/// kernels and buffers, and BatchNorm's running statistics.
#[derive(Debug)]
pub(crate) struct Sequence {
    pub(crate) kernels: StepKernels,
    kinds: Vec<LayerKind>,
    /// Each step's width.
    widths: Vec<usize>,
    /// The step of each dense layer.
    dense_step: Vec<usize>,
    /// Each step's own output (normalisations, activations, adds).
    out: Vec<Option<wgpu::Buffer>>,
    /// The gradient of a step's output, where a kernel forms it on its own.
    grad: Vec<Option<wgpu::Buffer>>,
    norms: Vec<NormBuffers>,
    /// The column reductions' chunk partials, shared by every normalisation.
    partials: wgpu::Buffer,
    /// BatchNorm's running mean then variance, each batch norm's pair at
    /// `running_at` (floats; at the device's binding alignment).
    pub(crate) running: wgpu::Buffer,
    /// The running statistics before the current `train_steps`, put back
    /// when a step diverges.
    pub(crate) running_before: wgpu::Buffer,
    running_at: Vec<Option<u64>>,
    /// Dropout of each dense layer in a training pass.
    dropout: Vec<Option<Dropout>>,
}

/// What a pass's step dispatches bind besides the sequence's own
/// buffers: the backend's, lent for building a plan.
pub(crate) struct StepResources<'a> {
    pub(crate) device: &'a wgpu::Device,
    pub(crate) max_per_dim: u32,
    pub(crate) uniform_align: u64,
    pub(crate) mlp: &'a Mlp,
    pub(crate) layout: &'a ParamLayout,
    pub(crate) params: &'a wgpu::Buffer,
    pub(crate) grads: &'a wgpu::Buffer,
    pub(crate) x_batch: &'a wgpu::Buffer,
    pub(crate) z: &'a [wgpu::Buffer],
    pub(crate) a: &'a [wgpu::Buffer],
    pub(crate) dz: &'a [wgpu::Buffer],
    pub(crate) steps: &'a wgpu::Buffer,
    pub(crate) unused_read: &'a wgpu::Buffer,
    pub(crate) unused_write: &'a wgpu::Buffer,
    pub(crate) dropout_seed: u32,
}

/// One dispatch of a step.
#[derive(Debug)]
pub(crate) struct StepOp {
    pub(crate) kernel: StepKernel,
    pub(crate) group: wgpu::BindGroup,
    pub(crate) groups: (u32, u32),
    pub(crate) work: Work,
}

/// The dispatches of the steps of one pass that are not dense products:
/// `forward[i]` runs as step i of the forward pass, `backward[i]` as step
/// i of the backward pass (for a dense layer: what forms its dZ, before
/// its products).
#[derive(Debug)]
pub(crate) struct StepPlan {
    pub(crate) forward: Vec<Vec<StepOp>>,
    pub(crate) backward: Vec<Vec<StepOp>>,
    _uniforms: wgpu::Buffer,
}

impl Sequence {
    /// The kernels and buffers of `mlp`'s steps for passes of at most
    /// `capacity` rows (`None` for a plain network); `dropout` is each
    /// dense layer's in training, as the backend applies it.
    pub(crate) fn new(
        device: &wgpu::Device,
        mlp: &Mlp,
        capacity: usize,
        dropout: &[Option<Dropout>],
        offset_alignment: u32,
    ) -> Option<Sequence> {
        // TabM has its own steps (src/gpu/ensemble.rs).
        if mlp.is_plain() || mlp.tabm_spec().is_some() {
            return None;
        }
        let kinds = mlp.kinds().to_vec();
        let mut widths = Vec::with_capacity(kinds.len());
        let mut dense_step = vec![0; mlp.layers().len()];
        for (i, kind) in kinds.iter().enumerate() {
            let width = match *kind {
                LayerKind::Dense(l) => {
                    dense_step[l] = i;
                    mlp.layers()[l].outputs
                }
                LayerKind::Norm(n) => mlp.norms()[n].width,
                _ if i == 0 => mlp.inputs(),
                _ => widths[i - 1],
            };
            widths.push(width);
        }
        let rows = capacity as u64;
        let sized = |label: &str, i: usize| storage(device, label, rows * widths[i] as u64);
        let out = kinds
            .iter()
            .enumerate()
            .map(|(i, kind)| {
                matches!(
                    kind,
                    LayerKind::Norm(_) | LayerKind::Activation(_) | LayerKind::Add
                )
                .then(|| sized("step output", i))
            })
            .collect();
        // A step's output gradient has a buffer where its consumer's
        // backward writes it: not between dense layers (the epilogue forms
        // dZ) nor before an add (which hands on its own).
        let dense = |i: usize| matches!(kinds[i], LayerKind::Dense(_));
        let grad = (0..kinds.len())
            .map(|i| {
                let written = match kinds.get(i + 1) {
                    None | Some(LayerKind::Add) => false,
                    Some(LayerKind::Dense(_)) => !dense(i),
                    Some(_) => true,
                };
                written.then(|| sized("step gradient", i))
            })
            .collect();
        let norms = mlp
            .norms()
            .iter()
            .map(|n| {
                let w = n.width as u64;
                NormBuffers {
                    normalized: storage(device, "normalised", rows * w),
                    stats: storage(
                        device,
                        "norm statistics",
                        match n.kind {
                            NormKind::Layer => rows,
                            NormKind::Batch => 2 * w,
                        },
                    ),
                    sums: storage(device, "norm gradient sums", 2 * w),
                }
            })
            .collect();
        let chunks = capacity.div_ceil(CHUNK_ROWS) as u64;
        let widest = mlp.norms().iter().map(|n| n.width).max().unwrap_or(1) as u64;
        let partials = storage(device, "norm partials", 2 * chunks * widest);
        let align = (offset_alignment as u64).max(16) / 4;
        let mut at = 0u64;
        let running_at: Vec<Option<u64>> = mlp
            .norms()
            .iter()
            .map(|n| {
                (n.kind == NormKind::Batch).then(|| {
                    let start = at;
                    at = (at + 2 * n.width as u64).next_multiple_of(align);
                    start
                })
            })
            .collect();
        let running_len = at.max(1);
        let mut sequence = Sequence {
            kernels: StepKernels::new(device),
            kinds,
            widths,
            dense_step,
            out,
            grad,
            norms,
            partials,
            running: storage(device, "running statistics", running_len),
            running_before: storage(device, "running statistics before the steps", running_len),
            running_at,
            dropout: dropout.to_vec(),
        };
        sequence.running = wgpu::util::DeviceExt::create_buffer_init(
            device,
            &wgpu::util::BufferInitDescriptor {
                label: Some("running statistics"),
                contents: bytemuck::cast_slice(&sequence.pack_buffers(mlp, &mlp.initial_buffers())),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
            },
        );
        Some(sequence)
    }

    /// Floats of the running statistics' buffer.
    pub(crate) fn running_len(&self) -> u64 {
        self.running.size() / 4
    }

    /// `buffers` (laid out as [`Mlp::buffer_ranges`]) as the running
    /// statistics' buffer holds them.
    pub(crate) fn pack_buffers(&self, mlp: &Mlp, buffers: &[f32]) -> Vec<f32> {
        let len = self.running_at.iter().flatten().count().max(1);
        let mut padded = vec![0.0; (self.running.size() as usize / 4).max(len)];
        for (n, at) in self.running_at.iter().enumerate() {
            if let (Some(at), Some((mean, var))) = (at, mlp.buffer_ranges(n)) {
                let at = *at as usize;
                padded[at..at + mean.len() + var.len()]
                    .copy_from_slice(&buffers[mean.start..var.end]);
            }
        }
        padded
    }

    /// The running statistics' buffer as [`Mlp::buffer_ranges`] lays them out.
    pub(crate) fn unpack_buffers(&self, mlp: &Mlp, padded: &[f32]) -> Vec<f32> {
        let mut buffers = vec![0.0; mlp.buffer_count()];
        for (n, at) in self.running_at.iter().enumerate() {
            if let (Some(at), Some((mean, var))) = (at, mlp.buffer_ranges(n)) {
                let (at, len) = (*at as usize, mean.len() + var.len());
                buffers[mean.start..var.end].copy_from_slice(&padded[at..at + len]);
            }
        }
        buffers
    }

    /// Every buffer the steps hold (memory accounting).
    pub(crate) fn buffers(&self) -> impl Iterator<Item = &wgpu::Buffer> {
        self.out
            .iter()
            .chain(&self.grad)
            .flatten()
            .chain(
                self.norms
                    .iter()
                    .flat_map(|n| [&n.normalized, &n.stats, &n.sums]),
            )
            .chain([&self.partials, &self.running, &self.running_before])
    }

    /// Where step `i`'s output lives (a skip's is its input's).
    fn source(&self, i: usize) -> Source {
        match self.kinds[i] {
            LayerKind::Dense(l) => Source::Dense(l),
            LayerKind::Skip if i == 0 => Source::Batch,
            LayerKind::Skip => self.source(i - 1),
            _ => Source::Step(i),
        }
    }

    /// Where dense layer `l` reads its input.
    pub(crate) fn input_of(&self, l: usize) -> Source {
        match self.dense_step[l] {
            0 => Source::Batch,
            i => self.source(i - 1),
        }
    }

    /// Where dense layer `l`'s input gradient goes.
    pub(crate) fn grad_into(&self, l: usize) -> GradInto {
        match self.dense_step[l] {
            0 => GradInto::Nothing,
            i => match self.kinds[i - 1] {
                LayerKind::Dense(prev) => GradInto::Dense(prev),
                _ => GradInto::Step(i - 1),
            },
        }
    }

    /// Step `i`'s output buffer (normalisations, activations, adds).
    pub(crate) fn out(&self, i: usize) -> &wgpu::Buffer {
        self.out[i]
            .as_ref()
            .expect("the step writes its own output")
    }

    /// Step `i`'s output gradient buffer.
    pub(crate) fn grad(&self, i: usize) -> &wgpu::Buffer {
        self.grad[i]
            .as_ref()
            .expect("a kernel forms the step's gradient")
    }

    /// Refuses a pass that BatchNorm cannot normalise as the CPU does: a
    /// batch split into passes (or shared by ranks) would be normalised
    /// pass by pass, and one row has no variance.
    pub(crate) fn check_batch(
        &self,
        mlp: &Mlp,
        rows: usize,
        batch: usize,
        capacity: usize,
    ) -> Result<()> {
        if !mlp.has_batch_norm() {
            return Ok(());
        }
        if rows < batch {
            return Err(Error::Config(format!(
                "batch normalisation over a batch shared by ranks (SyncBatchNorm) runs on the \
                 CPU backend only, so far (device cpu): this rank holds {rows} of the batch's \
                 {batch} rows"
            )));
        }
        if rows > capacity {
            return Err(Error::Config(format!(
                "batch normalisation on the GPU needs a whole batch in one pass, and a batch of \
                 {rows} rows exceeds the {capacity} rows a pass holds on this device (its binding \
                 limit for the widest layer, or max_rows_per_pass): choose a batch size of at most \
                 {capacity}"
            )));
        }
        if rows < 2 {
            return Err(Error::Config(
                "batch normalisation needs at least 2 rows a batch, and a batch of this epoch \
                 holds 1 (the rows left over by the batch size): choose a batch size that leaves \
                 none or more than one"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The step dispatches of a pass over `rows` rows, `offset` rows into
    /// its batch; `train`: a training pass (BatchNorm by the batch, and the
    /// backward pass), `accumulate`: its gradients add to those there.
    pub(crate) fn plan(
        &self,
        res: &StepResources<'_>,
        (rows, offset): (usize, usize),
        train: bool,
        accumulate: bool,
    ) -> StepPlan {
        let mlp = res.mlp;
        let r = rows as u64;
        let steps = self.kinds.len();
        let mut blocks = UniformBlocks::new(res.uniform_align);
        // Shapes first (`Pending`), bind groups once their buffer is uploaded.
        let mut forward: Vec<Vec<Pending>> = (0..steps).map(|_| Vec::new()).collect();
        let mut backward: Vec<Vec<Pending>> = (0..steps).map(|_| Vec::new()).collect();
        let chunks = rows.div_ceil(CHUNK_ROWS);
        let elementwise = |width: usize| grid(r * width as u64, 256, res.max_per_dim);
        let columns = |width: usize| grid(width as u64, 64, res.max_per_dim);
        let partial_groups = |width: usize| (width.div_ceil(64) as u32, chunks as u32);
        let input_of = |i: usize| {
            if i == 0 {
                Source::Batch
            } else {
                self.source(i - 1)
            }
        };
        let no_dropout = (0, 0.0, 0, 0);
        let dropout_of = |l: usize| match self.dropout[l].filter(|_| train) {
            Some(d) => (d.threshold.max(1), d.scale, res.dropout_seed, l as u32),
            None => no_dropout,
        };
        let residual_shape = |width: usize, f: crate::activation::Activation, has_b: bool, d| {
            let (activation, slope) = f.code();
            let (dropout_threshold, dropout_scale, dropout_seed, dropout_layer) = d;
            ResidualShape {
                rows: rows as u32,
                width: width as u32,
                activation,
                slope,
                has_b: u32::from(has_b),
                dropout_threshold,
                dropout_scale,
                dropout_seed,
                dropout_layer,
                row_offset: offset as u32,
                ..Default::default()
            }
        };
        let identity = crate::activation::Activation::Identity;
        // Forward, step by step.
        let mut skips = Vec::new();
        for (i, &kind) in self.kinds.iter().enumerate() {
            let width = self.widths[i];
            let input = input_of(i);
            let ops = &mut forward[i];
            match kind {
                LayerKind::Dense(_) => {}
                LayerKind::Skip => skips.push(i),
                LayerKind::Add => {
                    let kept = input_of(skips.pop().expect("an add follows its skip"));
                    let at = blocks.push(&residual_shape(width, identity, true, no_dropout));
                    ops.push(Pending::Residual {
                        kernel: StepKernel::ForwardStep,
                        at,
                        a: Operand::Out(input),
                        b: Some(Operand::Out(kept)),
                        z: None,
                        out: Target::Out(i),
                        groups: elementwise(width),
                        work: Work::of("residual add"),
                    });
                }
                LayerKind::Activation(f) => {
                    let at = blocks.push(&residual_shape(width, f, false, no_dropout));
                    ops.push(Pending::Residual {
                        kernel: StepKernel::ForwardStep,
                        at,
                        a: Operand::Out(input),
                        b: None,
                        z: None,
                        out: Target::Out(i),
                        groups: elementwise(width),
                        work: Work::of("activation"),
                    });
                }
                LayerKind::EnsembleView
                | LayerKind::Embed
                | LayerKind::Scale
                | LayerKind::EnsembleDense(_)
                | LayerKind::EnsembleLinear(_) => {
                    unreachable!("TabM runs its own steps (src/gpu/ensemble), not a Sequence")
                }
                LayerKind::Norm(n) => {
                    let layer = mlp.norms()[n];
                    let at = blocks.push(&NormShape {
                        rows: rows as u32,
                        width: width as u32,
                        chunks: chunks as u32,
                        train: u32::from(train),
                        accumulate: u32::from(accumulate),
                        eps: layer.eps as f32,
                        momentum: layer.momentum as f32,
                        unbiased: (rows as f64 / (rows as f64 - 1.0).max(1.0)) as f32,
                    });
                    let norm = |kernel, groups, work| Pending::Norm {
                        kernel,
                        at,
                        n,
                        input: Operand::Out(input),
                        out: Target::Out(i),
                        kept: Kept::Running,
                        groups,
                        work: Work::of(work),
                    };
                    match layer.kind {
                        NormKind::Layer => ops.push(norm(
                            StepKernel::LayerNormForward,
                            grid(r, 1, res.max_per_dim),
                            "layer norm",
                        )),
                        NormKind::Batch => {
                            if train {
                                ops.push(norm(
                                    StepKernel::ColumnPartials,
                                    partial_groups(width),
                                    "batch norm: column sums",
                                ));
                            }
                            ops.push(norm(
                                StepKernel::BatchStats,
                                columns(width),
                                "batch norm: statistics",
                            ));
                            ops.push(norm(
                                StepKernel::BatchNormApply,
                                elementwise(width),
                                "batch norm",
                            ));
                        }
                    }
                }
            }
        }
        // Backward, from the last step: `holder` is the step whose gradient
        // buffer holds the gradient of step i's output (None: a dense
        // layer's dZ holds it already, formed by the layer after it).
        if train {
            let mut holder: Option<usize> = None;
            let mut waiting = Vec::new();
            for i in (0..steps).rev() {
                let width = self.widths[i];
                let ops = &mut backward[i];
                match self.kinds[i] {
                    LayerKind::Dense(l) => {
                        if let Some(h) = holder {
                            let layer = mlp.layers()[l];
                            let at = blocks.push(&residual_shape(
                                width,
                                layer.activation,
                                false,
                                dropout_of(l),
                            ));
                            ops.push(Pending::Residual {
                                kernel: StepKernel::GradStep,
                                at,
                                a: Operand::Grad(h),
                                b: None,
                                z: Some(Operand::Z(l)),
                                out: Target::Dz(l),
                                groups: elementwise(width),
                                work: Work::layer("dZ", l),
                            });
                        }
                        holder = match self.grad_into(l) {
                            GradInto::Step(prev) => Some(prev),
                            _ => None,
                        };
                    }
                    LayerKind::Add => {
                        let h = holder.expect("an add's gradient has a buffer");
                        waiting.push(h);
                    }
                    LayerKind::Skip => {
                        let h = holder.expect("a skip's gradient has a buffer");
                        let kept = waiting.pop().expect("a skip has its add");
                        if i > 0 {
                            let at =
                                blocks.push(&residual_shape(width, identity, true, no_dropout));
                            ops.push(Pending::Residual {
                                kernel: StepKernel::GradStep,
                                at,
                                a: Operand::Grad(h),
                                b: Some(Operand::Grad(kept)),
                                z: None,
                                out: Target::Grad(i - 1),
                                groups: elementwise(width),
                                work: Work::of("skip gradient"),
                            });
                        }
                        holder = Some(i.saturating_sub(1));
                    }
                    LayerKind::Activation(f) => {
                        let h = holder.expect("an activation's gradient has a buffer");
                        if i > 0 {
                            let at = blocks.push(&residual_shape(width, f, false, no_dropout));
                            ops.push(Pending::Residual {
                                kernel: StepKernel::GradStep,
                                at,
                                a: Operand::Grad(h),
                                b: None,
                                z: Some(Operand::Out(input_of(i))),
                                out: Target::Grad(i - 1),
                                groups: elementwise(width),
                                work: Work::of("activation gradient"),
                            });
                        }
                        holder = Some(i.saturating_sub(1));
                    }
                    LayerKind::EnsembleView
                    | LayerKind::Embed
                    | LayerKind::Scale
                    | LayerKind::EnsembleDense(_)
                    | LayerKind::EnsembleLinear(_) => {
                        unreachable!("TabM runs its own steps (src/gpu/ensemble), not a Sequence")
                    }
                    LayerKind::Norm(n) => {
                        let h = holder.expect("a norm's gradient has a buffer");
                        let layer = mlp.norms()[n];
                        let at = blocks.push(&NormShape {
                            rows: rows as u32,
                            width: width as u32,
                            chunks: chunks as u32,
                            train: 1,
                            accumulate: u32::from(accumulate),
                            eps: layer.eps as f32,
                            momentum: layer.momentum as f32,
                            unbiased: 1.0,
                        });
                        let out = if i > 0 {
                            Target::Grad(i - 1)
                        } else {
                            Target::Nowhere
                        };
                        let norm = |kernel, groups, kept, work| Pending::Norm {
                            kernel,
                            at,
                            n,
                            input: Operand::Grad(h),
                            out,
                            kept,
                            groups,
                            work: Work::of(work),
                        };
                        ops.push(norm(
                            StepKernel::AffinePartials,
                            partial_groups(width),
                            Kept::Grads,
                            "norm: γ, β gradient sums",
                        ));
                        ops.push(norm(
                            StepKernel::AffineFinish,
                            columns(width),
                            Kept::Grads,
                            "norm: γ, β gradients",
                        ));
                        if i > 0 {
                            ops.push(match layer.kind {
                                NormKind::Layer => norm(
                                    StepKernel::LayerNormBackward,
                                    grid(r, 1, res.max_per_dim),
                                    Kept::Grads,
                                    "layer norm gradient",
                                ),
                                NormKind::Batch => norm(
                                    StepKernel::BatchNormBackward,
                                    elementwise(width),
                                    Kept::Grads,
                                    "batch norm gradient",
                                ),
                            });
                        }
                        holder = Some(i.saturating_sub(1));
                    }
                }
            }
        }
        let uniforms = blocks.upload(res.device);
        let bind = |ops: Vec<Vec<Pending>>| -> Vec<Vec<StepOp>> {
            ops.into_iter()
                .map(|step| {
                    step.into_iter()
                        .map(|op| self.bind(res, &uniforms, r, op))
                        .collect()
                })
                .collect()
        };
        StepPlan {
            forward: bind(forward),
            backward: bind(backward),
            _uniforms: uniforms,
        }
    }

    /// A region of `rows` rows of what `operand` names.
    fn operand<'a>(&'a self, res: &StepResources<'a>, rows: u64, operand: Operand) -> Region<'a> {
        let width = |l: usize| res.mlp.layers()[l].outputs as u64;
        match operand {
            Operand::Out(Source::Batch) => (res.x_batch, 0, rows * res.mlp.inputs() as u64),
            Operand::Out(Source::Dense(l)) => (&res.a[l], 0, rows * width(l)),
            Operand::Out(Source::Step(i)) => (self.out(i), 0, rows * self.widths[i] as u64),
            Operand::Grad(i) => (self.grad(i), 0, rows * self.widths[i] as u64),
            Operand::Z(l) => (&res.z[l], 0, rows * width(l)),
        }
    }

    /// The bind group of one pending dispatch.
    fn bind<'a>(
        &'a self,
        res: &StepResources<'a>,
        uniforms: &'a wgpu::Buffer,
        rows: u64,
        op: Pending,
    ) -> StepOp {
        fn region((buffer, offset, len): Region<'_>, binding: u32) -> wgpu::BindGroupEntry<'_> {
            entry(binding, buffer, offset * 4, NonZeroU64::new(len.max(1) * 4))
        }
        let whole = |buffer: &'a wgpu::Buffer, binding| entry(binding, buffer, 0, None);
        let target = |target: Target, width: usize| -> Region<'a> {
            let len = rows * width as u64;
            match target {
                Target::Out(i) => (self.out(i), 0, len),
                Target::Grad(i) => (self.grad(i), 0, len),
                Target::Dz(l) => (&res.dz[l], 0, len),
                Target::Nowhere => (res.unused_write, 0, 1),
            }
        };
        match op {
            Pending::Norm {
                kernel,
                at,
                n,
                input,
                out,
                kept,
                groups,
                work,
            } => {
                let width = res.mlp.norms()[n].width as u64;
                let buffers = &self.norms[n];
                let kept = match (kept, self.running_at[n]) {
                    (Kept::Running, Some(at)) => (&self.running, at, 2 * width),
                    (Kept::Running, None) => (res.unused_write, 0, 1),
                    (Kept::Grads, _) => (res.grads, res.layout.norm[n], 2 * width),
                };
                let entries = [
                    entry(
                        0,
                        uniforms,
                        at,
                        NonZeroU64::new(std::mem::size_of::<NormShape>() as u64),
                    ),
                    region(self.operand(res, rows, input), 1),
                    region((res.params, res.layout.norm[n], 2 * width), 2),
                    whole(&buffers.normalized, 3),
                    whole(&buffers.stats, 4),
                    region(target(out, width as usize), 5),
                    whole(&self.partials, 6),
                    region(kept, 7),
                    whole(&buffers.sums, 8),
                ];
                StepOp {
                    kernel,
                    group: self.group(res, kernel, &entries),
                    groups,
                    work,
                }
            }
            Pending::Residual {
                kernel,
                at,
                a,
                b,
                z,
                out,
                groups,
                work,
            } => {
                let width = match out {
                    Target::Out(i) | Target::Grad(i) => self.widths[i],
                    Target::Dz(l) => res.mlp.layers()[l].outputs,
                    Target::Nowhere => 1,
                };
                let read = |operand: Option<Operand>, binding| match operand {
                    Some(o) => region(self.operand(res, rows, o), binding),
                    None => whole(res.unused_read, binding),
                };
                let entries = [
                    entry(
                        0,
                        uniforms,
                        at,
                        NonZeroU64::new(std::mem::size_of::<ResidualShape>() as u64),
                    ),
                    entry(
                        1,
                        res.steps,
                        0,
                        NonZeroU64::new(std::mem::size_of::<StepUniform>() as u64),
                    ),
                    read(Some(a), 2),
                    read(b, 3),
                    read(z, 4),
                    region(target(out, width), 5),
                ];
                StepOp {
                    kernel,
                    group: self.group(res, kernel, &entries),
                    groups,
                    work,
                }
            }
        }
    }

    fn group(
        &self,
        res: &StepResources<'_>,
        kernel: StepKernel,
        entries: &[wgpu::BindGroupEntry<'_>],
    ) -> wgpu::BindGroup {
        res.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("step"),
            layout: &self.kernels.get(kernel).layout,
            entries,
        })
    }
}

/// What a step's dispatch reads.
#[derive(Debug, Clone, Copy)]
enum Operand {
    /// A step's output.
    Out(Source),
    /// The gradient buffer of step `i`.
    Grad(usize),
    /// Dense layer `l`'s Z.
    Z(usize),
}

/// What a step's dispatch writes.
#[derive(Debug, Clone, Copy)]
enum Target {
    Out(usize),
    Grad(usize),
    Dz(usize),
    /// The first step's input gradient, which nothing reads.
    Nowhere,
}

/// What a normalisation's `kept` binding holds.
#[derive(Debug, Clone, Copy)]
enum Kept {
    /// BatchNorm's running statistics (forward).
    Running,
    /// The gradients of γ and β (backward).
    Grads,
}

/// A dispatch whose shape is pushed and whose bind group waits for the
/// shapes' buffer.
enum Pending {
    Norm {
        kernel: StepKernel,
        at: u64,
        n: usize,
        input: Operand,
        out: Target,
        kept: Kept,
        groups: (u32, u32),
        work: Work,
    },
    Residual {
        kernel: StepKernel,
        at: u64,
        a: Operand,
        b: Option<Operand>,
        z: Option<Operand>,
        out: Target,
        groups: (u32, u32),
        work: Work,
    },
}
