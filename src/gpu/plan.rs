//! The bind groups of a pass (a forward, loss and backward over so many
//! rows), built from the resources they bind ([`PassResources`], which the
//! backend lends), once per pass shape and kept: `GpuBackend::plan`.

use super::codes::Epilogue;
use super::context::GpuContext;
use super::dispatch::{grid, matmul_grid, split_layout};
use super::ensemble::{Ensemble, EnsemblePlan, EnsembleResources};
use super::pipelines::{Kernel, Kernels, binding, entry};
use super::resources::{OperandTexture, Pack, PackSource, ParamLayout, Region, Resident, Textures};
use super::sequence::{GradInto, Sequence, Source, StepPlan, StepResources};
use super::uniforms::{
    GatherShape, LossShape, MatmulShape, ReduceShape, StepUniform, UniformBlocks,
};
use crate::dropout::Dropout;
use crate::loss::Loss;
use crate::model::Mlp;
use std::num::NonZeroU64;

/// What a pass covers: `rows` rows starting `offset` rows into a batch of
/// `batch` rows. A batch larger than the activation buffers is split into
/// such passes (micro-batches): the loss is normalised by the whole batch,
/// and every pass after the first adds its gradients and loss to the
/// first's, so that one update follows the same step as the unsplit batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PassKey {
    pub(crate) rows: usize,
    pub(crate) batch: usize,
    pub(crate) offset: usize,
    /// A training pass (dropout on) rather than evaluation or prediction.
    pub(crate) train: bool,
    /// Adds its gradients and loss to those already there (every pass of
    /// a step but its first).
    pub(crate) accumulate: bool,
}

impl PassKey {
    /// An evaluation or prediction pass over `rows` rows.
    pub(crate) fn whole(rows: usize) -> PassKey {
        PassKey {
            rows,
            batch: rows,
            offset: 0,
            train: false,
            accumulate: false,
        }
    }

    /// The training passes over `len` rows at `offset` in a batch of
    /// `batch` rows, at most `capacity` rows each.
    pub(crate) fn training(
        len: usize,
        batch: usize,
        offset: usize,
        capacity: usize,
    ) -> impl Iterator<Item = PassKey> {
        (0..len).step_by(capacity).map(move |start| PassKey {
            rows: capacity.min(len - start),
            batch,
            offset: offset + start,
            train: true,
            accumulate: start > 0,
        })
    }
}

/// The epilogue of the weight gradients of a pass that adds them to those
/// there (`accumulate`) or stores them.
pub(crate) fn weight_grad_epilogue(accumulate: bool) -> Epilogue {
    if accumulate {
        Epilogue::Add
    } else {
        Epilogue::Store
    }
}

/// The packs of one pass (texture matmul): its input, the activations of
/// every layer but the last, and every dZ.
#[derive(Debug)]
pub(crate) struct PlanPacks {
    pub(crate) x: Pack,
    pub(crate) a: Vec<Pack>,
    pub(crate) dz: Vec<Pack>,
    pub(crate) _uniforms: wgpu::Buffer,
}

/// A matrix product's bind groups, one per chunk of its reduction, to be
/// dispatched in order (`dispatch::reduction_chunks`): one unless K is
/// longer than `dispatch::REDUCTION_CHUNK`; and its workgroups.
#[derive(Debug)]
pub(crate) struct Product {
    pub(crate) chunks: Vec<wgpu::BindGroup>,
    pub(crate) groups: ProductGroups,
}

/// The workgroups of a product's dispatches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProductGroups {
    /// The matmul's: a tile of C each along x (columns) and y (rows), a
    /// slice of K each along z (split-K).
    pub(crate) matmul: (u32, u32, u32),
    /// Split-K's finishing dispatch, after each chunk's matmul.
    pub(crate) finish: Option<(u32, u32)>,
    /// Floats of the slices' partial products.
    partials: u64,
}

impl Kernels {
    /// The shape of an `m × n` product (`shape.m`, `shape.n`) with the
    /// slices of K its choice gives it, and its workgroups; with
    /// `bias_grad` (which the caller sets only for the workgroup-memory
    /// kernel) C has the bias gradient's column too. The slices' partial
    /// products take at most `max_partial_bytes`.
    pub(crate) fn product(
        &self,
        mut shape: MatmulShape,
        (max_per_dim, max_partial_bytes): (u32, u64),
    ) -> (MatmulShape, ProductGroups) {
        let (m, n, k) = (shape.m as usize, shape.n as usize, shape.k as usize);
        let (kernels, _) = self.matmul(m, n);
        let cols = n + shape.bias_grad as usize;
        let most = (max_partial_bytes / 4 / (m * cols).max(1) as u64).max(1);
        let slices = self.choice.slices(m, cols, k).min(most as u32);
        let (slices, slice_k) = split_layout(&kernels.tiling, k, slices);
        shape.slices = slices;
        shape.slice_k = slice_k;
        let (x, y) = matmul_grid(&kernels.tiling, m, cols);
        let elements = (m * cols) as u64;
        let split = slices > 1;
        let groups = ProductGroups {
            matmul: (x, y, slices),
            finish: split.then(|| grid(elements, 64, max_per_dim)),
            partials: if split { elements * slices as u64 } else { 0 },
        };
        (shape, groups)
    }
}

/// The bind groups of one pass over `rows` rows: forward, loss, backward.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) rows: usize,
    /// Adds its weight gradients to those already there (`PassKey::accumulate`).
    pub(crate) accumulate: bool,
    pub(crate) gather: Option<wgpu::BindGroup>,
    pub(crate) forward: Vec<Product>,
    pub(crate) loss: wgpu::BindGroup,
    pub(crate) loss_sum: wgpu::BindGroup,
    pub(crate) weight_grad: Vec<Product>,
    /// The column sums of each layer's bias gradient; none where the
    /// weight gradient's product forms it (`MatmulShape::bias_grad`).
    pub(crate) bias_grad: Vec<Option<wgpu::BindGroup>>,
    /// `input_grad[l]` carries dZ of layer l back to layer l − 1 (none for 0).
    pub(crate) input_grad: Vec<Option<Product>>,
    pub(crate) packs: Option<PlanPacks>,
    /// The dispatches of the steps that are not dense layers (a network
    /// that is not plain: src/gpu/sequence.rs).
    pub(crate) steps: Option<StepPlan>,
    /// A TabM network's dispatches (src/gpu/ensemble.rs), instead of the
    /// products above.
    pub(crate) ensemble: Option<EnsemblePlan>,
    /// Rows the loss runs over: a training pass of TabM stacks every
    /// member's.
    pub(crate) loss_rows: usize,
    pub(crate) _uniforms: wgpu::Buffer,
    /// The partial products of split-K, shared by every product of the pass.
    pub(crate) _partials: wgpu::Buffer,
}

/// What the bind groups of a pass bind: the kernels, the run's settings,
/// and every buffer and texture a pass reads or writes, lent by the
/// backend that owns them.
pub(crate) struct PassResources<'a> {
    pub(crate) ctx: &'a GpuContext,
    pub(crate) kernels: &'a Kernels,
    pub(crate) mlp: &'a Mlp,
    pub(crate) loss: Loss,
    pub(crate) layout: &'a ParamLayout,
    pub(crate) uniform_align: u64,
    /// Dropout per layer (training passes) and the seed of its masks.
    pub(crate) dropout: &'a [Option<Dropout>],
    pub(crate) dropout_seed: u32,
    pub(crate) params: &'a wgpu::Buffer,
    pub(crate) grads: &'a wgpu::Buffer,
    pub(crate) x_batch: &'a wgpu::Buffer,
    pub(crate) y_batch: &'a wgpu::Buffer,
    pub(crate) z: &'a [wgpu::Buffer],
    pub(crate) a: &'a [wgpu::Buffer],
    pub(crate) dz: &'a [wgpu::Buffer],
    pub(crate) textures: Option<&'a Textures>,
    pub(crate) row_stats: &'a wgpu::Buffer,
    pub(crate) results: &'a wgpu::Buffer,
    pub(crate) steps: &'a wgpu::Buffer,
    pub(crate) unused_read: &'a wgpu::Buffer,
    pub(crate) unused_write: &'a wgpu::Buffer,
    pub(crate) resident: Option<&'a Resident>,
    /// The other steps of a network that is not plain.
    pub(crate) sequence: Option<&'a Sequence>,
    /// A TabM network's kernels and buffers.
    pub(crate) ensemble: Option<&'a Ensemble>,
}

/// What a binding of a pass's bind group holds.
#[derive(Clone, Copy)]
pub(crate) enum Bound<'a> {
    Buffer(Region<'a>),
    /// A matmul operand texture (the texture matmul).
    Texture(&'a OperandTexture),
}

impl<'a> Bound<'a> {
    /// This region or texture as the bind group entry at `binding`.
    fn entry(self, binding: u32) -> wgpu::BindGroupEntry<'a> {
        match self {
            Bound::Buffer((buffer, offset, len)) => {
                entry(binding, buffer, offset * 4, NonZeroU64::new(len * 4))
            }
            Bound::Texture(texture) => wgpu::BindGroupEntry {
                binding,
                resource: wgpu::BindingResource::TextureView(&texture.view),
            },
        }
    }
}

/// The pack dispatches of `sources`, with the buffer that holds their shapes.
pub(crate) fn packs(
    ctx: &GpuContext,
    kernels: &Kernels,
    uniform_align: u64,
    sources: &[PackSource],
) -> (Vec<Pack>, wgpu::Buffer) {
    let max = ctx.limits.max_compute_workgroups_per_dimension;
    let mut blocks = UniformBlocks::new(uniform_align);
    let shapes: Vec<(u64, (u32, u32))> = sources
        .iter()
        .map(|source| {
            let (shape, groups) = source.texture.pack_shape(source.rows, max);
            (blocks.push(&shape), groups)
        })
        .collect();
    let uniforms = blocks.upload(&ctx.device);
    let packs = sources
        .iter()
        .zip(shapes)
        .map(|(source, (at, workgroups))| {
            let texture = source.texture;
            let size = NonZeroU64::new(source.rows as u64 * texture.cols as u64 * 4);
            let region = (source.buffer, source.offset, size);
            Pack {
                group: kernels.pack_group(&ctx.device, (&uniforms, at), region, texture),
                workgroups,
                quads: texture.quads(),
            }
        })
        .collect();
    (packs, uniforms)
}

impl<'a> PassResources<'a> {
    /// The packs of a pass over `rows` rows (texture matmul): each matrix a
    /// matmul reads, from its buffer into its texture.
    fn plan_packs(&self, textures: &Textures, rows: usize) -> PlanPacks {
        let layers = self.mlp.layers();
        // The last layer's activations are no operand: zip stops before them.
        let sources: Vec<PackSource> = std::iter::once((self.x_batch, &textures.x))
            .chain(self.a.iter().zip(&textures.a))
            .chain(self.dz.iter().zip(&textures.dz))
            .map(|(buffer, texture)| PackSource {
                buffer,
                offset: 0,
                rows,
                texture,
            })
            .collect();
        let (packs, uniforms) = packs(self.ctx, self.kernels, self.uniform_align, &sources);
        let mut packs = packs.into_iter();
        let x = packs.next().expect("the input's pack");
        let a = packs.by_ref().take(layers.len() - 1).collect();
        let dz = packs.collect();
        PlanPacks {
            x,
            a,
            dz,
            _uniforms: uniforms,
        }
    }

    /// The bind groups of a pass of shape `key`.
    pub(crate) fn build_plan(&self, key: PassKey) -> Plan {
        let rows = key.rows;
        let accumulate = u32::from(key.accumulate);
        let device = &self.ctx.device;
        let mlp = self.mlp;
        let layers = mlp.layers();
        let last = layers.len() - 1;
        let r = rows as u64;
        let mut blocks = UniformBlocks::new(self.uniform_align);
        // Record every shape first, then bind against the uploaded buffer.
        let gather_at = self.resident.map(|d| {
            blocks.push(&GatherShape {
                rows: rows as u32,
                features: d.features as u32,
                target_width: d.target_width as u32,
                offset: key.offset as u32,
                ..Default::default()
            })
        });
        let mut forward_at = Vec::new();
        let mut weight_grad_at = Vec::new();
        let mut bias_grad_at = Vec::new();
        let mut input_grad_at = Vec::new();
        let max = self.ctx.limits.max_compute_workgroups_per_dimension;
        // Split-K's partials within one binding, and no more than the
        // activations of a large pass (256 MiB).
        let max_partials = self.ctx.limits.max_storage_buffer_binding_size.min(1 << 28);
        let mut product = |shape: MatmulShape| {
            let (shape, groups) = self.kernels.product(shape, (max, max_partials));
            (blocks.push_chunks(shape), groups)
        };
        // The bias gradient is the weight gradient's extra column with the
        // workgroup-memory kernels (shaders/matmul.wgsl) where that column
        // falls in the last column of tiles, column sums otherwise: a
        // column of tiles more for one column of output cost more than the
        // dispatch it saves (lavapipe, docs/performance.md).
        let folds_bias = |l: usize| {
            let layer = &layers[l];
            let (matmul, _) = self.kernels.matmul(layer.outputs, layer.inputs);
            let tile = matmul.tiling.tile_n() as usize;
            let fits = layer.inputs.div_ceil(tile) == (layer.inputs + 1).div_ceil(tile);
            matmul.tiling.kind.folds_bias() && fits
        };
        for (l, layer) in layers.iter().enumerate() {
            let (code, slope) = layer.activation.code();
            let dropout = |l: usize| if key.train { self.dropout[l] } else { None };
            forward_at.push(product(
                MatmulShape {
                    m: rows as u32,
                    n: layer.outputs as u32,
                    k: layer.inputs as u32,
                    activation: code,
                    slope,
                    row_offset: key.offset as u32,
                    ..Default::default()
                }
                .with_dropout(dropout(l), self.dropout_seed, l),
            ));
            weight_grad_at.push(product(MatmulShape {
                m: layer.outputs as u32,
                n: layer.inputs as u32,
                k: rows as u32,
                activation: 0,
                slope: 0.0,
                bias_grad: u32::from(folds_bias(l)),
                ..Default::default()
            }));
            // Into the previous layer's dZ through its f' and dropout, or
            // (after another kind of step) into that step's gradient.
            let into = match self.sequence {
                None if l > 0 => GradInto::Dense(l - 1),
                None => GradInto::Nothing,
                Some(sequence) => sequence.grad_into(l),
            };
            let through = match into {
                GradInto::Nothing => None,
                GradInto::Dense(prev) => {
                    Some((layers[prev].activation.code(), dropout(prev), prev))
                }
                GradInto::Step(_) => Some(((0, 0.0), None, 0)),
            };
            input_grad_at.push(through.map(|((code, slope), dropout, prev)| {
                product(
                    MatmulShape {
                        m: rows as u32,
                        n: layer.inputs as u32,
                        k: layer.outputs as u32,
                        activation: code,
                        slope,
                        row_offset: key.offset as u32,
                        ..Default::default()
                    }
                    .with_dropout(dropout, self.dropout_seed, prev),
                )
            }));
        }
        for (l, layer) in layers.iter().enumerate() {
            bias_grad_at.push((!folds_bias(l)).then(|| {
                blocks.push(&ReduceShape {
                    rows: rows as u32,
                    cols: layer.outputs as u32,
                    accumulate,
                    // The layer's bias gradient is bound on its own.
                    out_offset: 0,
                    ..Default::default()
                })
            }));
        }
        let partials_len = forward_at
            .iter()
            .chain(&weight_grad_at)
            .chain(input_grad_at.iter().flatten())
            .map(|(_, groups)| groups.partials)
            .max()
            .unwrap_or(0);
        let (out_code, out_slope) = layers[last].activation.code();
        let width = mlp.outputs();
        // TabM: a training pass's loss is over every member's stacked rows,
        // each reading its batch row's target (the mean of the members'
        // losses); an evaluation pass's over the ensemble's mean.
        let members = match self.ensemble {
            Some(e) if key.train => e.members(),
            _ => 1,
        };
        let loss_rows = rows * members;
        let inv_norm = match self.loss {
            Loss::CrossEntropy => 1.0 / (key.batch * members) as f64,
            _ => 1.0 / (key.batch * members * width) as f64,
        };
        let loss_at = blocks.push(&LossShape {
            rows: loss_rows as u32,
            target_rows: if members > 1 { rows as u32 } else { 0 },
            width: width as u32,
            loss: self.loss.code(),
            activation: out_code,
            slope: out_slope,
            inv_norm: inv_norm as f32,
            accumulate,
            ..Default::default()
        });
        let loss_sum_at = blocks.push(&ReduceShape {
            rows: loss_rows as u32,
            cols: 2,
            accumulate,
            out_offset: 0,
            ..Default::default()
        });
        let uniforms = blocks.upload(device);
        let partials = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("split-K partials"),
            size: (partials_len * 4).max(16),
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let mm = std::mem::size_of::<MatmulShape>();
        let shape = |offset: u64, size: usize| {
            entry(
                binding::SHAPE,
                &uniforms,
                offset,
                NonZeroU64::new(size as u64),
            )
        };
        let step_size = NonZeroU64::new(std::mem::size_of::<StepUniform>() as u64);
        // A bind group: the shape (or any first entry), then each bound
        // region or texture at its named binding.
        let group = |kernel: &Kernel,
                     label: &str,
                     first: Vec<wgpu::BindGroupEntry>,
                     bound: &[(u32, Bound)]| {
            let mut entries = first;
            entries.extend(bound.iter().map(|&(binding, bound)| bound.entry(binding)));
            device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(label),
                layout: &kernel.layout,
                entries: &entries,
            })
        };
        // A product's bind groups, one per chunk of its reduction (`at`:
        // each chunk's shape): its operands and outputs, the step's uniform
        // (for dropout) and the partials of split-K.
        let matmul_group = |kernel: &Kernel,
                            label: &str,
                            (at, groups): &(Vec<u64>, ProductGroups),
                            [a, b, c, aux, out2]: [Bound<'a>; 5]|
         -> Product {
            use binding::matmul;
            let bound = [
                (matmul::A, a),
                (matmul::B, b),
                (matmul::C, c),
                (matmul::AUX, aux),
                (matmul::OUT2, out2),
            ];
            let chunks = at
                .iter()
                .map(|&at| {
                    let first = vec![
                        shape(at, mm),
                        entry(matmul::STEP, self.steps, 0, step_size),
                        entry(matmul::PARTIALS, &partials, 0, None),
                        // Read only by members runs.
                        entry(matmul::MEMBER_DROPOUT, self.unused_read, 0, None),
                    ];
                    group(kernel, label, first, &bound)
                })
                .collect();
            Product {
                chunks,
                groups: *groups,
            }
        };
        let k = self.kernels;
        let (unused_read, unused_write) = ((self.unused_read, 0, 4), (self.unused_write, 0, 4));
        let gather = self.resident.zip(gather_at).map(|(d, at)| {
            use binding::data;
            let batch = |floats: usize| NonZeroU64::new(r * floats as u64 * 4);
            device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("gather"),
                layout: &k.gather.layout,
                entries: &[
                    shape(at, std::mem::size_of::<GatherShape>()),
                    entry(data::STEP, self.steps, 0, step_size),
                    entry(data::PERM, &d.perm, 0, None),
                    entry(data::X, &d.x, 0, None),
                    entry(data::TARGETS, &d.targets, 0, None),
                    entry(data::X_BATCH, self.x_batch, 0, batch(d.features)),
                    entry(data::TARGET_BATCH, self.y_batch, 0, batch(d.target_width)),
                ],
            })
        });
        let layer_inputs = |l: usize| layers[l].inputs as u64;
        let input_of = |l: usize| -> Region {
            let source = match self.sequence {
                None if l == 0 => Source::Batch,
                None => Source::Dense(l - 1),
                Some(sequence) => sequence.input_of(l),
            };
            match source {
                Source::Batch => (self.x_batch, 0, r * mlp.inputs() as u64),
                Source::Dense(prev) => (&self.a[prev], 0, r * layers[prev].outputs as u64),
                Source::Step(i) => {
                    let sequence = self.sequence.expect("a step's output is the sequence's");
                    (sequence.out(i), 0, r * layer_inputs(l))
                }
            }
        };
        // A matmul operand: the buffer, or its texture for the texture matmul.
        let textures = self.textures;
        let operand = |region: Region<'a>, texture: Option<&'a OperandTexture>| match texture {
            Some(texture) => Bound::Texture(texture),
            None => Bound::Buffer(region),
        };
        let mut forward = Vec::new();
        let mut weight_grad = Vec::new();
        let mut bias_grad = Vec::new();
        let mut input_grad = Vec::new();
        for (l, layer) in layers.iter().enumerate() {
            let (o, i) = (layer.outputs as u64, layer.inputs as u64);
            let weight = (self.params, self.layout.weight[l], o * i);
            let bias = (self.params, self.layout.bias[l], o);
            let z = (&self.z[l], 0, r * o);
            let a = (&self.a[l], 0, r * o);
            let dz = (&self.dz[l], 0, r * o);
            let input = operand(input_of(l), textures.map(|t| t.input(l)));
            let weight = operand(weight, textures.map(|t| &t.weights[l]));
            let dz_operand = operand(dz, textures.map(|t| &t.dz[l]));
            // Z = A_prev · Wᵀ + b, A = f(Z).
            forward.push(matmul_group(
                &k.matmuls[0].forward,
                "forward",
                &forward_at[l],
                [
                    input,
                    weight,
                    Bound::Buffer(z),
                    Bound::Buffer(bias),
                    Bound::Buffer(a),
                ],
            ));
            let bias_grad_region = (self.grads, self.layout.bias[l], o);
            // dW (+)= dZᵀ · A_prev, and with the workgroup-memory kernel
            // db (+)= Σ_batch dZ as its extra column, into out2.
            let folded = bias_grad_at[l].is_none();
            weight_grad.push(matmul_group(
                k.matmuls[0].weight_grad(device, false),
                "weight gradient",
                &weight_grad_at[l],
                [
                    dz_operand,
                    input,
                    Bound::Buffer((self.grads, self.layout.weight[l], o * i)),
                    Bound::Buffer(unused_read),
                    Bound::Buffer(if folded {
                        bias_grad_region
                    } else {
                        unused_write
                    }),
                ],
            ));
            // db (+)= Σ_batch dZ, by column sums.
            bias_grad.push(bias_grad_at[l].map(|at| {
                group(
                    &k.column_sums,
                    "bias gradient",
                    vec![shape(at, std::mem::size_of::<ReduceShape>())],
                    &[
                        (binding::reduce::INPUT, Bound::Buffer(dz)),
                        (binding::reduce::OUT, Bound::Buffer(bias_grad_region)),
                    ],
                )
            }));
            input_grad.push(input_grad_at[l].as_ref().map(|at| {
                let (z_prev, dz_prev) = match self.sequence.map(|s| s.grad_into(l)) {
                    Some(GradInto::Step(step)) => {
                        let sequence = self.sequence.expect("steps are the sequence's");
                        // The gradient of the step's output, as it is (f' of
                        // the identity: the input is bound for its size only).
                        (input_of(l), (sequence.grad(step), 0, r * i))
                    }
                    Some(GradInto::Dense(_)) | Some(GradInto::Nothing) | None => {
                        let prev = match self.sequence.map(|s| s.grad_into(l)) {
                            Some(GradInto::Dense(prev)) => prev,
                            _ => l - 1,
                        };
                        let width = layers[prev].outputs as u64;
                        (
                            (&self.z[prev], 0, r * width),
                            (&self.dz[prev], 0, r * width),
                        )
                    }
                };
                // dZ_prev = (dZ · W) ⊙ f'(Z_prev).
                matmul_group(
                    &k.matmuls[0].input_grad,
                    "input gradient",
                    at,
                    [
                        dz_operand,
                        weight,
                        Bound::Buffer(dz_prev),
                        Bound::Buffer(z_prev),
                        Bound::Buffer(unused_write),
                    ],
                )
            }));
        }
        let (w, lastl) = (width as u64, last);
        let target_width = if self.loss.takes_classes() { 1 } else { w };
        let lr = loss_rows as u64;
        // The output the loss reads: the last layer's, or the ensemble's mean.
        let (loss_z, loss_output) = match self.ensemble {
            Some(e) if !key.train => ((&e.mean, 0, r * w), (&e.mean, 0, r * w)),
            _ => ((&self.z[lastl], 0, lr * w), (&self.a[lastl], 0, lr * w)),
        };
        // With the result slots and the step's uniform block, which
        // `loss_summed` writes and reads.
        let loss = group(
            &k.loss,
            "loss",
            vec![
                shape(loss_at, std::mem::size_of::<LossShape>()),
                entry(binding::loss::RESULTS, self.results, 0, None),
                entry(binding::loss::STEP, self.steps, 0, step_size),
            ],
            &[
                (binding::loss::Z, Bound::Buffer(loss_z)),
                (binding::loss::OUTPUT, Bound::Buffer(loss_output)),
                (
                    binding::loss::TARGETS,
                    Bound::Buffer((self.y_batch, 0, r * target_width)),
                ),
                (
                    binding::loss::GRAD,
                    Bound::Buffer((&self.dz[lastl], 0, lr * w)),
                ),
                (
                    binding::loss::STATS,
                    Bound::Buffer((self.row_stats, 0, lr * 2)),
                ),
            ],
        );
        let loss_sum = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("loss sum"),
            layout: &k.loss_sum.layout,
            entries: &[
                shape(loss_sum_at, std::mem::size_of::<ReduceShape>()),
                entry(
                    binding::reduce::INPUT,
                    self.row_stats,
                    0,
                    NonZeroU64::new(lr * 2 * 4),
                ),
                entry(binding::reduce::OUT, self.results, 0, None),
                entry(binding::reduce::STEP, self.steps, 0, step_size),
            ],
        });
        // A step's later passes add their weight gradients, and split
        // products need their finishing dispatch: compile those pipelines
        // now, not while a pass is recorded.
        for (l, layer) in layers.iter().enumerate() {
            let (matmul, _) = self.kernels.matmul(layer.outputs, layer.inputs);
            if key.accumulate {
                matmul.weight_grad(device, true);
            }
            let finishes = [
                (rows, layer.outputs, Epilogue::BiasActivation, &forward[l]),
                (
                    layer.outputs,
                    layer.inputs,
                    weight_grad_epilogue(key.accumulate),
                    &weight_grad[l],
                ),
            ];
            let input = input_grad[l]
                .as_ref()
                .map(|p| (rows, layer.inputs, Epilogue::ActivationGrad, p));
            for (m, n, epilogue, product) in finishes.into_iter().chain(input) {
                if product.groups.finish.is_some() {
                    self.kernels.matmul(m, n).0.finish(device, epilogue);
                }
            }
        }
        let steps = self.sequence.map(|sequence| {
            let resources = StepResources {
                device,
                max_per_dim: max,
                uniform_align: self.uniform_align,
                mlp,
                layout: self.layout,
                params: self.params,
                grads: self.grads,
                x_batch: self.x_batch,
                z: self.z,
                a: self.a,
                dz: self.dz,
                steps: self.steps,
                unused_read: self.unused_read,
                unused_write: self.unused_write,
                dropout_seed: self.dropout_seed,
            };
            sequence.plan(&resources, (rows, key.offset), key.train, key.accumulate)
        });
        let ensemble = self.ensemble.map(|e| {
            let resources = EnsembleResources {
                device,
                kernels: self.kernels,
                max_per_dim: max,
                uniform_align: self.uniform_align,
                mlp,
                layout: self.layout,
                params: self.params,
                grads: self.grads,
                x_batch: self.x_batch,
                z: self.z,
                a: self.a,
                dz: self.dz,
                steps: self.steps,
                unused_read: self.unused_read,
                unused_write: self.unused_write,
                dropout: self.dropout,
                dropout_seed: self.dropout_seed,
            };
            e.plan(&resources, (rows, key.offset), key.train, key.accumulate)
        });
        Plan {
            rows,
            accumulate: key.accumulate,
            steps,
            ensemble,
            loss_rows,
            gather,
            forward,
            loss,
            loss_sum,
            weight_grad,
            bias_grad,
            input_grad,
            packs: textures.map(|t| self.plan_packs(t, rows)),
            _uniforms: uniforms,
            _partials: partials,
        }
    }
}
