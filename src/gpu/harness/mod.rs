//! Runs one kernel at a time on host data: the GPU side of the kernel
//! parity tests (each kernel against its CPU twin) and of the kernel
//! benchmarks. Training never goes through here. The matmuls are in
//! matmul.rs, TabM's steps in ensemble.rs.

mod ensemble;
mod matmul;

pub use ensemble::{MemberBlocks, MemberMask};

use super::codes::Epilogue;
use super::context::GpuContext;
use super::dispatch::grid;
use super::pipelines::{
    ELEMENTWISE, EnsembleKernels, Kernel, Kernels, LossKernel, NORM_GROUPS, matmul_layout,
    matmul_module, matmul_variant, module, pipeline,
};
use super::resources::{OperandTexture, Pack};
use super::tiling::{MatmulChoice, MatmulKind, MatmulTiling};
use super::uniforms::{
    ElementwiseShape, GatherShape, LossShape, OptimizerUniform, ReduceShape, StepUniform,
};
use crate::activation::Activation;
use crate::data::{Dataset, Targets};
use crate::error::Result;
use crate::loss::{Loss, TargetBatch};
use crate::optim::{GradClip, Optimizer};
use std::num::NonZeroU64;
use wgpu::util::DeviceExt;

/// An open device with every pipeline built.
#[derive(Debug)]
pub struct KernelHarness {
    ctx: GpuContext,
    kernels: Kernels,
    tests: TestKernels,
    /// TabM's kernels (shaders/ensemble.wgsl).
    ensemble: EnsembleKernels,
    /// The slices of K every matmul is split into where its K allows
    /// (`dispatch::split_layout`); 1: none.
    slices: u32,
}

/// The pipelines only the tests and benchmarks use: training fuses these
/// steps into its matmuls' epilogues, and never compiles them.
#[derive(Debug)]
struct TestKernels {
    /// Plain C (+)= op(A) · op(B) for the four transposition variants
    /// (index: trans_a · 2 + trans_b).
    matmul_plain: [Kernel; 4],
    /// The bias + activation epilogue on its own.
    bias_activation_forward: Kernel,
    /// dA ⊙ f'(Z) on its own.
    activation_backward: Kernel,
}

impl TestKernels {
    fn new(device: &wgpu::Device, tiling: &MatmulTiling) -> TestKernels {
        let matmul = matmul_module(device, tiling);
        let layout = matmul_layout(device, tiling.kind);
        let plain =
            |trans| matmul_variant(device, &matmul, tiling, trans, Epilogue::Store, &layout);
        let activation = module(
            device,
            "elementwise",
            include_str!("../../../shaders/elementwise.wgsl"),
            "",
        );
        let elementwise = |entry| pipeline(device, &activation, entry, ELEMENTWISE, &[]);
        TestKernels {
            matmul_plain: [
                plain((false, false)),
                plain((false, true)),
                plain((true, false)),
                plain((true, true)),
            ],
            bias_activation_forward: elementwise("bias_activation_forward"),
            activation_backward: elementwise("activation_backward"),
        }
    }
}

/// An operand texture with the pack dispatch that fills it.
struct Packed {
    texture: OperandTexture,
    pack: Pack,
}

/// A binding for [`KernelHarness::run`].
enum Bind<'a> {
    Uniform(&'a [u8]),
    Data(&'a [u8]),
    /// Writable, `n` bytes, zero-filled, read back afterwards.
    Out(usize),
    /// Writable, starting from these bytes, read back afterwards.
    InOut(&'a [u8]),
    /// A matmul operand, `rows` × `cols` as stored: a storage buffer, or for
    /// the texture matmul a texture packed on the device by the pack kernel.
    Matrix(&'a [f32], usize, usize),
}

impl KernelHarness {
    /// Opens the best adapter (any, software included).
    pub fn open() -> Result<KernelHarness> {
        KernelHarness::open_with(None)
    }

    /// Opens the best adapter with a given matmul tiling (so that both
    /// kernels are tested on any adapter).
    pub fn open_with(tiling: Option<MatmulTiling>) -> Result<KernelHarness> {
        let ctx = GpuContext::open(false)?;
        let tiling = tiling.unwrap_or(MatmulChoice::for_adapter(ctx.summary()).small);
        let kernels = Kernels::new(&ctx.device, MatmulChoice::single(tiling));
        let tests = TestKernels::new(&ctx.device, &tiling);
        let ensemble = EnsembleKernels::new(&ctx.device);
        Ok(KernelHarness {
            ctx,
            kernels,
            tests,
            ensemble,
            slices: 1,
        })
    }

    /// Opens the best adapter with matmuls of `tiling` split into `slices`
    /// slices of K where K allows (split-K, as a product too small to fill
    /// the device runs in training).
    pub fn open_split(tiling: MatmulTiling, slices: u32) -> Result<KernelHarness> {
        let mut harness = KernelHarness::open_with(Some(tiling))?;
        harness.slices = slices.max(1);
        Ok(harness)
    }

    /// The device in use.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// The matmul tiling chosen for this adapter.
    pub fn tiling(&self) -> MatmulTiling {
        self.kernels.tiling()
    }

    /// Binds `binds` in order at bindings 0, 1, …, dispatches `groups`, and
    /// returns the contents of every `Out`/`InOut` binding.
    fn run(
        &self,
        kernel: &Kernel,
        binds: &[Bind],
        groups: (u32, u32),
        dynamic: bool,
    ) -> Result<Vec<Vec<u8>>> {
        self.run_all(&[(kernel, (groups.0, groups.1, 1))], binds, dynamic)
    }

    /// [`run`](Self::run) with several dispatches of kernels of one
    /// layout, in order, on the same bindings.
    fn run_all(
        &self,
        dispatches: &[(&Kernel, (u32, u32, u32))],
        binds: &[Bind],
        dynamic: bool,
    ) -> Result<Vec<Vec<u8>>> {
        let kernel = dispatches[0].0;
        let device = &self.ctx.device;
        let padded = |bytes: &[u8]| {
            let mut v = bytes.to_vec();
            v.resize(v.len().max(4).next_multiple_of(16), 0);
            v
        };
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        let buffers: Vec<(wgpu::Buffer, Option<u64>)> = binds
            .iter()
            .map(|b| match b {
                Bind::Uniform(bytes) => (
                    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: None,
                        contents: &padded(bytes),
                        usage: wgpu::BufferUsages::UNIFORM,
                    }),
                    None,
                ),
                Bind::Data(bytes) => (
                    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: None,
                        contents: &padded(bytes),
                        usage,
                    }),
                    None,
                ),
                Bind::Matrix(values, ..) => (
                    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: None,
                        contents: &padded(bytemuck::cast_slice(values)),
                        usage,
                    }),
                    None,
                ),
                Bind::Out(n) => (
                    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: None,
                        contents: &padded(&vec![0; *n]),
                        usage,
                    }),
                    Some(*n as u64),
                ),
                Bind::InOut(bytes) => (
                    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: None,
                        contents: &padded(bytes),
                        usage,
                    }),
                    Some(bytes.len() as u64),
                ),
            })
            .collect();
        // Operands of the texture matmul: packed from their buffers first.
        let textured = self.kernels.tiling().kind == MatmulKind::Texture;
        let packs: Vec<Option<Packed>> = binds
            .iter()
            .zip(&buffers)
            .map(|(bind, (buffer, _))| match bind {
                Bind::Matrix(_, rows, cols) if textured => Some(self.pack(buffer, *rows, *cols)),
                _ => None,
            })
            .collect();
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .zip(&packs)
            .enumerate()
            .map(|(i, ((buffer, _), pack))| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: match pack {
                    Some(Packed { texture, .. }) => {
                        wgpu::BindingResource::TextureView(&texture.view)
                    }
                    None => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer,
                        offset: 0,
                        // A dynamic-offset uniform binds one block.
                        size: if dynamic && matches!(binds[i], Bind::Uniform(_)) && i > 0 {
                            NonZeroU64::new(std::mem::size_of::<StepUniform>() as u64)
                        } else {
                            None
                        },
                    }),
                },
            })
            .collect();
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &kernel.layout,
            entries: &entries,
        });
        let mut encoder = device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.record_packs(&mut pass, packs.iter().flatten());
            for &(kernel, (x, y, z)) in dispatches {
                pass.set_pipeline(&kernel.pipeline);
                pass.set_bind_group(0, &group, if dynamic { &[0] } else { &[] });
                pass.dispatch_workgroups(x, y, z);
            }
        }
        self.ctx.queue.submit([encoder.finish()]);
        buffers
            .iter()
            .filter_map(|(buffer, out)| out.map(|n| self.ctx.read(buffer, 0, n.max(4))))
            .map(|r| {
                r.map(|mut v| {
                    v.truncate(v.len());
                    v
                })
            })
            .collect()
    }

    /// An operand texture for the `rows` × `cols` matrix in `buffer`, with
    /// the pack kernel's bind group and workgroups that fill it.
    fn pack(&self, buffer: &wgpu::Buffer, rows: usize, cols: usize) -> Packed {
        let device = &self.ctx.device;
        let texture = OperandTexture::new(device, "operand", rows, cols);
        let max = self.ctx.limits.max_compute_workgroups_per_dimension;
        let (shape, groups) = texture.pack_shape(rows, max);
        let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::bytes_of(&shape),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let group = self
            .kernels
            .pack_group(device, (&uniform, 0), (buffer, 0, None), &texture);
        let pack = Pack {
            group,
            workgroups: groups,
            quads: texture.quads(),
        };
        Packed { texture, pack }
    }

    /// Records the pack dispatches of `packs`.
    fn record_packs<'a>(
        &self,
        pass: &mut wgpu::ComputePass,
        packs: impl IntoIterator<Item = &'a Packed>,
    ) {
        for Packed { pack, .. } in packs {
            pass.set_pipeline(&self.kernels.pack_kernel(pack.quads).pipeline);
            pass.set_bind_group(0, &pack.group, &[]);
            pass.dispatch_workgroups(pack.workgroups.0, pack.workgroups.1, 1);
        }
    }

    fn groups_1d(&self, threads: usize, group: u32) -> (u32, u32) {
        grid(
            threads as u64,
            group,
            self.ctx.limits.max_compute_workgroups_per_dimension,
        )
    }

    /// The stand-alone fused bias + activation forward: (Z, A).
    pub fn bias_activation_forward(
        &self,
        input: &[f32],
        bias: &[f32],
        activation: Activation,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let (code, slope) = activation.code();
        let shape = ElementwiseShape {
            rows: (input.len() / bias.len()) as u32,
            width: bias.len() as u32,
            activation: code,
            slope,
        };
        let out = self.run(
            &self.tests.bias_activation_forward,
            &[
                Bind::Uniform(bytemuck::bytes_of(&shape)),
                Bind::Data(bytemuck::cast_slice(input)),
                Bind::Data(bytemuck::cast_slice(bias)),
                Bind::Out(input.len() * 4),
                Bind::Out(input.len() * 4),
            ],
            self.groups_1d(input.len(), 256),
            false,
        )?;
        Ok((floats(&out[0]), floats(&out[1])))
    }

    /// The stand-alone activation backward: dA ⊙ f'(Z).
    pub fn activation_backward(
        &self,
        z: &[f32],
        grad_a: &[f32],
        activation: Activation,
    ) -> Result<Vec<f32>> {
        let (code, slope) = activation.code();
        let shape = ElementwiseShape {
            rows: z.len() as u32,
            width: 1,
            activation: code,
            slope,
        };
        let out = self.run(
            &self.tests.activation_backward,
            &[
                Bind::Uniform(bytemuck::bytes_of(&shape)),
                Bind::Data(bytemuck::cast_slice(z)),
                Bind::Data(bytemuck::cast_slice(grad_a)),
                Bind::Out(4),
                Bind::Out(z.len() * 4),
            ],
            self.groups_1d(z.len(), 256),
            false,
        )?;
        Ok(floats(&out[1]))
    }

    /// The loss kernel and its reduction on an output batch (identity output
    /// activation), as training chooses them ([`Kernels::loss_for`]: one
    /// dispatch for a small batch): returns (mean loss, number correct,
    /// dL/dZ). Targets of fewer rows than the output are TabM's: each
    /// member's block of rows reads them again.
    pub fn loss(
        &self,
        loss: Loss,
        output: &[f32],
        width: usize,
        targets: TargetBatch<'_>,
    ) -> Result<(f32, f32, Vec<f32>)> {
        let max = self.ctx.limits.max_compute_workgroups_per_dimension;
        let rows = output.len() / width;
        let chosen = self.kernels.loss_for(rows, width, max);
        self.loss_by(&chosen, loss, output, width, targets)
    }

    /// [`loss`](Self::loss) by the thread-a-row kernel and the sum's own
    /// dispatch, whatever the size (the kernels a large batch takes).
    pub fn loss_unsummed(
        &self,
        loss: Loss,
        output: &[f32],
        width: usize,
        targets: TargetBatch<'_>,
    ) -> Result<(f32, f32, Vec<f32>)> {
        let max = self.ctx.limits.max_compute_workgroups_per_dimension;
        let rows = output.len() / width;
        let chosen = LossKernel {
            kernel: &self.kernels.loss,
            groups: grid(rows as u64, 64, max),
            summed: false,
        };
        self.loss_by(&chosen, loss, output, width, targets)
    }

    fn loss_by(
        &self,
        chosen: &LossKernel,
        loss: Loss,
        output: &[f32],
        width: usize,
        targets: TargetBatch<'_>,
    ) -> Result<(f32, f32, Vec<f32>)> {
        let rows = output.len() / width;
        let inv_norm = match loss {
            Loss::CrossEntropy => 1.0 / rows as f64,
            _ => 1.0 / output.len() as f64,
        };
        // Fewer targets than rows: TabM's members, each reading them again.
        let target_rows = match targets {
            TargetBatch::Classes(c) => c.len(),
            TargetBatch::Values(v) => v.len() / width,
        };
        let shape = LossShape {
            rows: rows as u32,
            width: width as u32,
            loss: loss.code(),
            activation: 0,
            slope: 0.0,
            inv_norm: inv_norm as f32,
            accumulate: 0,
            target_rows: if target_rows < rows {
                target_rows as u32
            } else {
                0
            },
            ..Default::default()
        };
        let target_bytes: &[u8] = match targets {
            TargetBatch::Classes(c) => bytemuck::cast_slice(c),
            TargetBatch::Values(v) => bytemuck::cast_slice(v),
        };
        let out = self.run(
            chosen.kernel,
            &[
                Bind::Uniform(bytemuck::bytes_of(&shape)),
                Bind::Data(bytemuck::cast_slice(output)),
                Bind::Data(bytemuck::cast_slice(output)),
                Bind::Data(target_bytes),
                Bind::Out(output.len() * 4),
                Bind::Out(rows * 2 * 4),
                Bind::Out(8),
                Bind::Uniform(bytemuck::bytes_of(&StepUniform::default())),
            ],
            chosen.groups,
            true,
        )?;
        if chosen.summed {
            let sums = floats(&out[2]);
            return Ok((sums[0], sums[1], floats(&out[0])));
        }
        let stats = out[1].clone();
        let reduce = ReduceShape {
            rows: rows as u32,
            cols: 2,
            accumulate: 0,
            out_offset: 0,
            ..Default::default()
        };
        let summed = self.run(
            &self.kernels.loss_sum,
            &[
                Bind::Uniform(bytemuck::bytes_of(&reduce)),
                Bind::Data(&stats),
                Bind::Out(8),
                Bind::Uniform(bytemuck::bytes_of(&StepUniform::default())),
            ],
            (1, 1),
            true,
        )?;
        let sums = floats(&summed[0]);
        Ok((sums[0], sums[1], floats(&out[0])))
    }

    /// Column sums of a rows × cols matrix (the bias-gradient reduction).
    pub fn column_sums(&self, input: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>> {
        let shape = ReduceShape {
            rows: rows as u32,
            cols: cols as u32,
            accumulate: 0,
            out_offset: 0,
            ..Default::default()
        };
        let out = self.run(
            &self.kernels.column_sums,
            &[
                Bind::Uniform(bytemuck::bytes_of(&shape)),
                Bind::Data(bytemuck::cast_slice(input)),
                Bind::Out(cols * 4),
            ],
            Kernels::column_sums_groups(cols, self.ctx.limits.max_compute_workgroups_per_dimension),
            false,
        )?;
        Ok(floats(&out[0]))
    }

    /// The first pass of the gradient's global L2 norm (`sum_squares`):
    /// `NORM_GROUPS` partial sums of g², which the optimizer adds up when
    /// it clips by norm ([`optimizer_step`](Self::optimizer_step)).
    pub fn grad_norm_partials(&self, grads: &[f32]) -> Result<Vec<f32>> {
        let shape = ReduceShape {
            rows: grads.len() as u32,
            cols: NORM_GROUPS,
            accumulate: 0,
            out_offset: 0,
            ..Default::default()
        };
        let partials = self.run(
            &self.kernels.sum_squares,
            &[
                Bind::Uniform(bytemuck::bytes_of(&shape)),
                Bind::Data(bytemuck::cast_slice(grads)),
                Bind::Out(NORM_GROUPS as usize * 4),
            ],
            (NORM_GROUPS, 1),
            false,
        )?;
        Ok(floats(&partials[0]))
    }

    /// One optimizer step t over flat `params`, with clipping (by the norm
    /// of `partials`, the gradient's partial sums of g² as
    /// [`grad_norm_partials`](Self::grad_norm_partials) gives them);
    /// `state` is slot-major. Returns the new parameters and state.
    #[allow(clippy::too_many_arguments)]
    pub fn optimizer_step(
        &self,
        optimizer: &Optimizer,
        clip: &GradClip,
        partials: &[f32],
        params: &[f32],
        grads: &[f32],
        state: &[f32],
        t: u64,
        lr: f64,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        // The kernel updates whole vec4s: pad every slot to a multiple of 4.
        let n = params.len();
        let padded = n.next_multiple_of(4).max(4);
        let pad = |values: &[f32]| -> Vec<f32> {
            let mut v = values.to_vec();
            v.resize(padded, 0.0);
            v
        };
        let slots = state.len() / n.max(1);
        // Each slot bound on its own (unused ones: one zero quad).
        let slot = |k: usize| -> Vec<f32> {
            if k < slots {
                pad(&state[k * n..(k + 1) * n])
            } else {
                vec![0.0; 4]
            }
        };
        let (state0, state1, state2) = (slot(0), slot(1), slot(2));
        let shape = OptimizerUniform::new(optimizer, clip, padded as u64, partials.len() as u32);
        let kernel = if clip.max_norm.is_some() {
            &self.kernels.optimizer_clipped
        } else {
            &self.kernels.optimizer
        };
        let step = StepUniform::new(&optimizer.rule(), t, lr, 0, 0);
        let out = self.run(
            kernel,
            &[
                Bind::Uniform(bytemuck::bytes_of(&shape)),
                Bind::Uniform(bytemuck::bytes_of(&step)),
                Bind::InOut(bytemuck::cast_slice(&pad(params))),
                Bind::Data(bytemuck::cast_slice(&pad(grads))),
                Bind::InOut(bytemuck::cast_slice(&state0)),
                Bind::Data(bytemuck::cast_slice(if partials.is_empty() {
                    &[0.0]
                } else {
                    partials
                })),
                Bind::InOut(bytemuck::cast_slice(&state1)),
                Bind::InOut(bytemuck::cast_slice(&state2)),
            ],
            self.groups_1d(padded / 4, 256),
            true,
        )?;
        let mut new_params = floats(&out[0]);
        new_params.truncate(n);
        let new_state = out[1..=slots]
            .iter()
            .flat_map(|slot| floats(slot)[..n].to_vec())
            .collect();
        Ok((new_params, new_state))
    }

    /// Gathers rows `order[start..start + rows]` of `data` on the GPU:
    /// (inputs, targets as raw 32-bit words).
    pub fn gather(
        &self,
        data: &Dataset,
        order: &[u32],
        start: usize,
        rows: usize,
    ) -> Result<(Vec<f32>, Vec<u32>)> {
        let (targets, width): (&[u8], usize) = match data.targets() {
            Targets::Classes(c) => (bytemuck::cast_slice(c), 1),
            Targets::Values { values, width } => (bytemuck::cast_slice(values), *width),
        };
        let shape = GatherShape {
            rows: rows as u32,
            features: data.features() as u32,
            target_width: width as u32,
            offset: 0,
            ..Default::default()
        };
        let step = StepUniform {
            batch_start: start as u32,
            ..Default::default()
        };
        let out = self.run(
            &self.kernels.gather,
            &[
                Bind::Uniform(bytemuck::bytes_of(&shape)),
                Bind::Uniform(bytemuck::bytes_of(&step)),
                Bind::Data(bytemuck::cast_slice(order)),
                Bind::Data(bytemuck::cast_slice(data.x())),
                Bind::Data(targets),
                Bind::Out(rows * data.features() * 4),
                Bind::Out(rows * width * 4),
            ],
            self.groups_1d(rows * (data.features() + width), 256),
            true,
        )?;
        Ok((floats(&out[0]), bytemuck::pod_collect_to_vec(&out[1])))
    }
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytemuck::pod_collect_to_vec(bytes)
}

/// The shape op(X) of `rows` × `cols` is stored in: transposed or not.
fn stored_shape(rows: usize, cols: usize, transposed: bool) -> (usize, usize) {
    if transposed {
        (cols, rows)
    } else {
        (rows, cols)
    }
}

/// op(X) of `rows` × `cols` as a matmul operand, in the shape it is stored.
fn stored(values: &[f32], rows: usize, cols: usize, transposed: bool) -> Bind<'_> {
    let (rows, cols) = stored_shape(rows, cols, transposed);
    Bind::Matrix(values, rows, cols)
}
