//! A TabM network on the GPU (`Mlp::tabm`): every member in each
//! dispatch. Its activations are `[k, rows, width]` (the members' stacked
//! rows, k · rows a pass of `rows` batch rows); the view is no copy (the
//! first step after it reads the batch for every member); a shared dense
//! layer (`tabm-mini`) is the plain products over the stacked rows; a
//! BatchEnsemble layer is X̃ = X ⊙ r (shaders/ensemble.wgsl), one shared
//! product U = X̃ · Wᵀ over the stacked rows, then Z = U ⊙ s + b and its
//! activation and dropout; a member's own layer (`LinearEnsemble`, every
//! output layer) is the products with the member as the dispatch's z.
//! Each member's bias, r, s and scaling gradients are its column sums.
//! Dropout gives a member its own columns, as the CPU's `drop_out`. An
//! evaluation pass ends in the ensemble's mean, which the loss and
//! `predict` read. The CPU twin: src/cpu/sequence.rs with
//! src/cpu/ensemble.rs and src/cpu/members_layers.rs. TabM's products run
//! unsplit (no split-K). planner.rs says what each step dispatches.

mod planner;

use super::pipelines::{EnsembleKernel, EnsembleKernels, Kernels, MatmulKernels, binding, entry};
use super::profile::Work;
use super::resources::{ParamLayout, Region, storage};
use super::uniforms::{EnsembleShape, MatmulShape, StepUniform, UniformBlocks};
use crate::dropout::Dropout;
use crate::model::{LayerKind, Mlp};
use planner::Planner;
use std::num::NonZeroU64;

/// A BatchEnsemble step's buffers (`[k, rows, width]` each).
#[derive(Debug)]
struct BatchEnsembleBuffers {
    /// X̃ = X ⊙ r.
    scaled: wgpu::Buffer,
    /// U = X̃ · Wᵀ.
    product: wgpu::Buffer,
    /// dU = dZ ⊙ s.
    product_grad: wgpu::Buffer,
    /// dX̃ = dU · W.
    scaled_grad: wgpu::Buffer,
}

/// What TabM adds to a GPU backend: its kernels and buffers.
#[derive(Debug)]
pub(crate) struct Ensemble {
    kernels: EnsembleKernels,
    members: usize,
    kinds: Vec<LayerKind>,
    /// Each BatchEnsemble step's buffers.
    batch_ensemble: Vec<Option<BatchEnsembleBuffers>>,
    /// `tabm-mini`'s scaling: its output and that output's gradient.
    scaled_input: Option<(wgpu::Buffer, wgpu::Buffer)>,
    /// Zeros, the bias of a BatchEnsemble layer's shared product.
    zeros: wgpu::Buffer,
    /// A second write nothing reads (two unused outputs of one dispatch).
    spare_write: wgpu::Buffer,
    /// The ensemble's output of an evaluation pass, `[rows, outputs]`.
    pub(crate) mean: wgpu::Buffer,
    mean_code: u32,
}

/// What a TabM pass binds besides the ensemble's own buffers: the
/// backend's, lent for building a plan.
pub(crate) struct EnsembleResources<'a> {
    pub(crate) device: &'a wgpu::Device,
    pub(crate) kernels: &'a Kernels,
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
    pub(crate) dropout: &'a [Option<Dropout>],
    pub(crate) dropout_seed: u32,
}

/// Which matmul pipeline a product runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProductKernel {
    /// Z = X · Wᵀ + b, A = f(Z) ⊙ dropout.
    Forward,
    /// dW (+)= Aᵀ · B.
    WeightGrad,
    /// dZ_prev = (dZ · W) ⊙ dropout ⊙ f'(Z_prev).
    InputGrad,
    /// A member's own layer: Z = X · W + b.
    MemberForward,
    /// A member's own layer: dZ_prev = (dZ · Wᵀ) ⊙ dropout ⊙ f'(Z_prev).
    MemberInputGrad,
}

impl ProductKernel {
    /// The pipeline, of `matmuls`' tiling; a weight gradient that adds
    /// with `accumulate`.
    pub(crate) fn of<'a>(
        self,
        matmuls: &'a MatmulKernels,
        device: &wgpu::Device,
        accumulate: bool,
    ) -> &'a super::pipelines::Kernel {
        match self {
            ProductKernel::Forward => &matmuls.forward,
            ProductKernel::WeightGrad => matmuls.weight_grad(device, accumulate),
            ProductKernel::InputGrad => &matmuls.input_grad,
            ProductKernel::MemberForward => matmuls.member_forward(device),
            ProductKernel::MemberInputGrad => matmuls.member_input_grad(device),
        }
    }
}

/// One dispatch (or a product's chunks of K, in order) of a TabM pass.
#[derive(Debug)]
pub(crate) enum EnsembleOp {
    Step {
        kernel: EnsembleKernel,
        group: wgpu::BindGroup,
        groups: (u32, u32),
        work: Work,
    },
    Product {
        kernel: ProductKernel,
        /// The product's m × n, which picks its tiling (`Kernels::matmul`).
        size: (usize, usize),
        chunks: Vec<wgpu::BindGroup>,
        groups: (u32, u32, u32),
        work: Work,
    },
}

/// The dispatches of one TabM pass, in order.
#[derive(Debug)]
pub(crate) struct EnsemblePlan {
    pub(crate) forward: Vec<EnsembleOp>,
    pub(crate) backward: Vec<EnsembleOp>,
    _uniforms: wgpu::Buffer,
    _partials: wgpu::Buffer,
}

/// Where a step's output (a layer's input) lives.
#[derive(Debug, Clone, Copy)]
enum Input {
    /// The batch, every member's (after the view).
    Batch,
    /// `tabm-mini`'s scaled input.
    Scaled,
    /// Dense layer `l`'s A.
    Dense(usize),
}

/// A region a dispatch binds, by name until the buffers are at hand.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Unused,
    Batch,
    ScaledInput,
    ScaledInputGrad,
    Z(usize),
    A(usize),
    Dz(usize),
    /// A BatchEnsemble step's X̃, U, dU, dX̃.
    Scaled(usize),
    Product(usize),
    ProductGrad(usize),
    ScaledGrad(usize),
    Zeros,
    Mean,
    /// A range of the parameters or of the gradients: (offset, floats).
    Params(u64, u64),
    Grads(u64, u64),
}

/// A dispatch whose shape is pushed and whose bind group waits for the
/// shapes' buffer.
enum Pending {
    Step {
        kernel: EnsembleKernel,
        at: u64,
        /// a, b, c, z, out, out2.
        slots: [Slot; 6],
        groups: (u32, u32),
        work: Work,
    },
    Product {
        kernel: ProductKernel,
        size: (usize, usize),
        at: Vec<u64>,
        /// A, B, C, AUX, OUT2.
        slots: [Slot; 5],
        groups: (u32, u32, u32),
        work: Work,
    },
}

impl Ensemble {
    /// TabM's kernels and buffers for passes of at most `capacity` batch
    /// rows (`None` for a network that is not TabM).
    pub(crate) fn new(device: &wgpu::Device, mlp: &Mlp, capacity: usize) -> Option<Ensemble> {
        let spec = mlp.tabm_spec()?;
        let k = spec.k as u64;
        let stacked =
            |width: usize| storage(device, "TabM step", k * capacity as u64 * width as u64);
        let kinds = mlp.kinds().to_vec();
        let batch_ensemble = kinds
            .iter()
            .map(|kind| match *kind {
                LayerKind::EnsembleDense(l) => {
                    let (inputs, outputs) = (mlp.layers()[l].inputs, mlp.layers()[l].outputs);
                    Some(BatchEnsembleBuffers {
                        scaled: stacked(inputs),
                        product: stacked(outputs),
                        product_grad: stacked(outputs),
                        scaled_grad: stacked(inputs),
                    })
                }
                _ => None,
            })
            .collect();
        let scaled_input = kinds
            .contains(&LayerKind::Scale)
            .then(|| (stacked(mlp.inputs()), stacked(mlp.inputs())));
        let widest = mlp.layers().iter().map(|l| l.outputs).max().unwrap_or(1);
        Some(Ensemble {
            kernels: EnsembleKernels::new(device),
            members: spec.k,
            kinds,
            batch_ensemble,
            scaled_input,
            zeros: storage(device, "zeros", widest as u64),
            spare_write: storage(device, "unused (write)", 4),
            mean: storage(
                device,
                "ensemble mean",
                capacity as u64 * mlp.outputs() as u64,
            ),
            mean_code: super::codes::mean_code(spec.mean),
        })
    }

    /// The members, k.
    pub(crate) fn members(&self) -> usize {
        self.members
    }

    /// The pipeline of one of TabM's kernels.
    pub(crate) fn kernel(&self, kernel: EnsembleKernel) -> &super::pipelines::Kernel {
        self.kernels.get(kernel)
    }

    /// Every buffer TabM adds (memory accounting).
    pub(crate) fn buffers(&self) -> impl Iterator<Item = &wgpu::Buffer> {
        self.batch_ensemble
            .iter()
            .flatten()
            .flat_map(|b| [&b.scaled, &b.product, &b.product_grad, &b.scaled_grad])
            .chain(self.scaled_input.iter().flat_map(|(a, b)| [a, b]))
            .chain([&self.zeros, &self.spare_write, &self.mean])
    }

    /// Where step `i`'s input lives.
    fn input_of(&self, i: usize) -> Input {
        match self.kinds[i - 1] {
            LayerKind::EnsembleView => Input::Batch,
            LayerKind::Scale => Input::Scaled,
            LayerKind::Dense(l) | LayerKind::EnsembleDense(l) | LayerKind::EnsembleLinear(l) => {
                Input::Dense(l)
            }
            other => unreachable!("TabM has no {other:?} step"),
        }
    }

    /// The dispatches of a pass over `rows` batch rows, `offset` rows into
    /// its batch; `train`: with the backward pass and dropout (else ending
    /// in the ensemble's mean); `accumulate`: its gradients add to those
    /// there.
    pub(crate) fn plan(
        &self,
        res: &EnsembleResources<'_>,
        (rows, offset): (usize, usize),
        train: bool,
        accumulate: bool,
    ) -> EnsemblePlan {
        let mut planner = Planner {
            ensemble: self,
            res,
            rows,
            offset,
            train,
            accumulate,
            blocks: UniformBlocks::new(res.uniform_align),
            forward: Vec::new(),
            backward: Vec::new(),
        };
        for i in 1..self.kinds.len() {
            planner.forward_step(i);
        }
        if train {
            for i in (1..self.kinds.len()).rev() {
                planner.backward_step(i);
            }
        } else {
            planner.mean();
        }
        let uniforms = planner.blocks.upload(res.device);
        let partials = storage(res.device, "split-K partials (unused)", 4);
        let bind = |ops: Vec<Pending>| -> Vec<EnsembleOp> {
            ops.into_iter()
                .map(|op| self.bind(res, (&uniforms, &partials), rows, op))
                .collect()
        };
        let (forward, backward) = (planner.forward, planner.backward);
        EnsemblePlan {
            forward: bind(forward),
            backward: bind(backward),
            _uniforms: uniforms,
            _partials: partials,
        }
    }

    /// The region a slot names, of a pass over `rows` batch rows.
    fn region<'a>(&'a self, res: &EnsembleResources<'a>, rows: u64, slot: Slot) -> Region<'a> {
        let stacked = self.members as u64 * rows;
        let layer = |l: usize| res.mlp.layers()[l];
        let batch_ensemble = |i: usize| {
            self.batch_ensemble[i]
                .as_ref()
                .expect("a BatchEnsemble step has its buffers")
        };
        let scaled_input = || self.scaled_input.as_ref().expect("tabm-mini scales");
        let widths = |i: usize| match self.kinds[i] {
            LayerKind::EnsembleDense(l) => (layer(l).inputs as u64, layer(l).outputs as u64),
            _ => unreachable!("only BatchEnsemble steps have these buffers"),
        };
        match slot {
            Slot::Unused => (res.unused_read, 0, 1),
            Slot::Batch => (res.x_batch, 0, rows * res.mlp.inputs() as u64),
            Slot::ScaledInput => (&scaled_input().0, 0, stacked * res.mlp.inputs() as u64),
            Slot::ScaledInputGrad => (&scaled_input().1, 0, stacked * res.mlp.inputs() as u64),
            Slot::Z(l) => (&res.z[l], 0, stacked * layer(l).outputs as u64),
            Slot::A(l) => (&res.a[l], 0, stacked * layer(l).outputs as u64),
            Slot::Dz(l) => (&res.dz[l], 0, stacked * layer(l).outputs as u64),
            Slot::Scaled(i) => (&batch_ensemble(i).scaled, 0, stacked * widths(i).0),
            Slot::Product(i) => (&batch_ensemble(i).product, 0, stacked * widths(i).1),
            Slot::ProductGrad(i) => (&batch_ensemble(i).product_grad, 0, stacked * widths(i).1),
            Slot::ScaledGrad(i) => (&batch_ensemble(i).scaled_grad, 0, stacked * widths(i).0),
            Slot::Zeros => (&self.zeros, 0, self.zeros.size() / 4),
            Slot::Mean => (&self.mean, 0, rows * res.mlp.outputs() as u64),
            Slot::Params(at, len) => (res.params, at, len),
            Slot::Grads(at, len) => (res.grads, at, len),
        }
    }

    /// The bind group of one pending dispatch.
    fn bind<'a>(
        &'a self,
        res: &EnsembleResources<'a>,
        (uniforms, partials): (&'a wgpu::Buffer, &'a wgpu::Buffer),
        rows: usize,
        op: Pending,
    ) -> EnsembleOp {
        let rows = rows as u64;
        let step_size = NonZeroU64::new(std::mem::size_of::<StepUniform>() as u64);
        // Outputs nothing reads go to the unused write buffers, two apart.
        let written = |slot: Slot, spare: bool, binding: u32| match slot {
            Slot::Unused if spare => entry(binding, &self.spare_write, 0, None),
            Slot::Unused => entry(binding, res.unused_write, 0, None),
            slot => read(self.region(res, rows, slot), binding),
        };
        fn read((buffer, offset, len): Region<'_>, binding: u32) -> wgpu::BindGroupEntry<'_> {
            entry(binding, buffer, offset * 4, NonZeroU64::new(len.max(1) * 4))
        }
        let read_slot = |slot: Slot, binding: u32| match slot {
            Slot::Unused => entry(binding, res.unused_read, 0, None),
            slot => read(self.region(res, rows, slot), binding),
        };
        match op {
            Pending::Step {
                kernel,
                at,
                slots: [a, b, c, z, out, out2],
                groups,
                work,
            } => {
                let shape = NonZeroU64::new(std::mem::size_of::<EnsembleShape>() as u64);
                let entries = [
                    entry(0, uniforms, at, shape),
                    entry(1, res.steps, 0, step_size),
                    read_slot(a, 2),
                    read_slot(b, 3),
                    read_slot(c, 4),
                    read_slot(z, 5),
                    written(out, false, 6),
                    written(out2, true, 7),
                ];
                let group = res.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("TabM step"),
                    layout: &self.kernels.get(kernel).layout,
                    entries: &entries,
                });
                EnsembleOp::Step {
                    kernel,
                    group,
                    groups,
                    work,
                }
            }
            Pending::Product {
                kernel,
                size,
                at,
                slots: [a, b, c, aux, out2],
                groups,
                work,
            } => {
                use binding::matmul;
                let (matmuls, _) = res.kernels.matmul(size.0, size.1);
                // Every matmul pipeline shares one layout.
                let layout = &kernel.of(matmuls, res.device, false).layout;
                let shape = NonZeroU64::new(std::mem::size_of::<MatmulShape>() as u64);
                let chunks = at
                    .iter()
                    .map(|&at| {
                        let entries = [
                            entry(binding::SHAPE, uniforms, at, shape),
                            read_slot(a, matmul::A),
                            read_slot(b, matmul::B),
                            written(c, false, matmul::C),
                            read_slot(aux, matmul::AUX),
                            written(out2, true, matmul::OUT2),
                            entry(matmul::STEP, res.steps, 0, step_size),
                            entry(matmul::PARTIALS, partials, 0, None),
                            entry(matmul::MEMBER_DROPOUT, res.unused_read, 0, None),
                        ];
                        res.device.create_bind_group(&wgpu::BindGroupDescriptor {
                            label: Some("TabM product"),
                            layout,
                            entries: &entries,
                        })
                    })
                    .collect();
                EnsembleOp::Product {
                    kernel,
                    size,
                    chunks,
                    groups,
                    work,
                }
            }
        }
    }
}
