//! The bind groups of a members run's passes, and the recording of a step.

use super::super::codes::Epilogue;
use super::super::dispatch::grid;
use super::super::pipelines::{
    Kernel, Kernels, NORM_GROUPS, Slot, binding, entry, matmul_module, matmul_variant, module,
    pipeline,
};
use super::super::resources::storage_init;
use super::super::tiling::MatmulTiling;
use super::super::uniforms::{
    GatherShape, LossShape, MatmulShape, OptimizerUniform, ReduceShape, StepUniform, UniformBlocks,
};
use super::{GpuMembers, MemberStep, Mode, at, whole};
use std::num::NonZeroU64;

/// The pipelines of a members run.
pub(super) struct Pipelines {
    forward: Kernel,
    weight_grad: Kernel,
    input_grad: Kernel,
    gather: Kernel,
    loss: Kernel,
    column_sums: Kernel,
    sum_squares: Kernel,
    layer_norms: Kernel,
    update: Kernel,
    update_clipped: Kernel,
}

impl Pipelines {
    pub(super) fn new(device: &wgpu::Device, tiling: &MatmulTiling) -> Pipelines {
        let matmul_layout = super::super::pipelines::matmul_layout(device, tiling.kind);
        let module_mm = matmul_module(device, tiling);
        let variant = |trans, epilogue| {
            matmul_variant(device, &module_mm, tiling, trans, epilogue, &matmul_layout)
        };
        let data = module(
            device,
            "members data",
            include_str!("../../../shaders/data.wgsl"),
            "",
        );
        let loss = module(
            device,
            "members loss",
            include_str!("../../../shaders/loss.wgsl"),
            "",
        );
        let reduce = module(
            device,
            "members reduce",
            include_str!("../../../shaders/reduce.wgsl"),
            "",
        );
        let optimizer = module(
            device,
            "members optimizer",
            include_str!("../../../shaders/optimizer.wgsl"),
            "",
        );
        use Slot::*;
        let build = |module, entry, slots: &[Slot]| pipeline(device, module, entry, slots, &[]);
        let update_slots = [
            Uniform,
            StepUniform,
            ReadWrite,
            Read,
            ReadWrite,
            Read,
            ReadWrite,
            ReadWrite,
            Read,
        ];
        Pipelines {
            forward: variant((false, true), Epilogue::BiasActivation),
            weight_grad: variant((true, false), Epilogue::Store),
            input_grad: variant((false, false), Epilogue::ActivationGrad),
            gather: build(
                &data,
                "gather_members",
                &[
                    Uniform,
                    StepUniform,
                    Read,
                    Read,
                    Read,
                    ReadWrite,
                    ReadWrite,
                    Read,
                    Read,
                    ReadWrite,
                ],
            ),
            loss: build(
                &loss,
                "loss_members",
                &[
                    Uniform,
                    Read,
                    Read,
                    Read,
                    ReadWrite,
                    ReadWrite,
                    ReadWrite,
                    StepUniform,
                    Read,
                    Read,
                ],
            ),
            column_sums: build(&reduce, "column_sums", &[Uniform, Read, ReadWrite]),
            sum_squares: build(&reduce, "sum_squares", &[Uniform, Read, ReadWrite]),
            layer_norms: build(
                &reduce,
                "layer_norms",
                &[Uniform, Read, ReadWrite, StepUniform, Read, Read],
            ),
            update: build(&optimizer, "update_members", &update_slots),
            update_clipped: build(&optimizer, "update_members_clipped", &update_slots),
        }
    }
}

/// The shapes and bind groups of one call's passes.
pub(super) struct Passes {
    gather: wgpu::BindGroup,
    forward: Vec<wgpu::BindGroup>,
    weight_grad: Vec<wgpu::BindGroup>,
    bias_grad: Vec<wgpu::BindGroup>,
    input_grad: Vec<Option<wgpu::BindGroup>>,
    loss: wgpu::BindGroup,
    sum_squares: wgpu::BindGroup,
    layer_norms: wgpu::BindGroup,
    update: wgpu::BindGroup,
    /// Kept alive while the bind groups are.
    _buffers: Vec<wgpu::Buffer>,
}

/// The data a call's passes read: resident rows, each member's order of
/// them `stride` apart, and whether (and which) weights they carry.
pub(super) struct Source<'a> {
    pub(super) x: &'a wgpu::Buffer,
    pub(super) targets: &'a wgpu::Buffer,
    pub(super) weights: &'a wgpu::Buffer,
    pub(super) weighted: bool,
    pub(super) data_rows: usize,
    pub(super) perm: &'a wgpu::Buffer,
    pub(super) stride: usize,
}

impl GpuMembers {
    /// The bind groups of a call's passes over `source`: a training step's
    /// (dropout on) or, with `evaluate`, an evaluation's forward and loss.
    pub(super) fn passes(&self, source: &Source, evaluate: bool) -> Passes {
        let device = &self.ctx.device;
        let k = self.members.len() as u32;
        let b = self.rows as u32;
        let stride = self.stride as u32;
        let layers = self.mlp.layers();
        let last = layers.len() - 1;
        let mut blocks =
            UniformBlocks::new(self.ctx.limits.min_uniform_buffer_offset_alignment as u64);
        let gather_at = blocks.push(&GatherShape {
            rows: b,
            features: self.mlp.inputs() as u32,
            target_width: if self.loss.takes_classes() {
                1
            } else {
                self.mlp.outputs() as u32
            },
            order_stride: source.stride as u32,
            data_rows: source.data_rows as u32,
            weighted: source.weighted as u32,
            ..Default::default()
        });
        let product = |m: usize, n: usize, kk: usize| MatmulShape {
            m: m as u32,
            n: n as u32,
            k: kk as u32,
            k_start: 0,
            k_end: kk as u32,
            slices: 1,
            members: k,
            dropout_layer: u32::MAX,
            ..Default::default()
        };
        let mut shapes = Vec::new();
        for (l, layer) in layers.iter().enumerate() {
            let (code, slope) = layer.activation.code();
            let (i, o) = (layer.inputs, layer.outputs);
            let forward = blocks.push(&MatmulShape {
                activation: code,
                slope,
                member_a: b * i as u32,
                member_b: stride,
                member_c: b * o as u32,
                member_aux: stride,
                member_out2: b * o as u32,
                dropout_layer: if l < last && !evaluate {
                    l as u32
                } else {
                    u32::MAX
                },
                ..product(self.rows, o, i)
            });
            let weight_grad = blocks.push(&MatmulShape {
                member_a: b * o as u32,
                member_b: b * i as u32,
                member_c: stride,
                ..product(o, i, self.rows)
            });
            let bias_grad = blocks.push(&ReduceShape {
                rows: b,
                cols: o as u32,
                out_offset: self.layout.bias[l] as u32,
                members: k,
                input_stride: b * o as u32,
                out_stride: stride,
                ..Default::default()
            });
            let input_grad = (l > 0).then(|| {
                let (code, slope) = layers[l - 1].activation.code();
                blocks.push(&MatmulShape {
                    activation: code,
                    slope,
                    member_a: b * o as u32,
                    member_b: stride,
                    member_c: b * i as u32,
                    member_aux: b * i as u32,
                    dropout_layer: (l - 1) as u32,
                    ..product(self.rows, i, o)
                })
            });
            shapes.push((forward, weight_grad, bias_grad, input_grad));
        }
        let (out_code, out_slope) = layers[last].activation.code();
        let loss_at = blocks.push(&LossShape {
            rows: b,
            width: self.mlp.outputs() as u32,
            loss: self.loss.code(),
            activation: out_code,
            slope: out_slope,
            members: k,
            ..Default::default()
        });
        let squares_at = blocks.push(&ReduceShape {
            rows: stride,
            cols: NORM_GROUPS,
            members: k,
            input_stride: stride,
            out_stride: NORM_GROUPS,
            ..Default::default()
        });
        let norms_at = blocks.push(&ReduceShape {
            cols: layers.len() as u32,
            members: k,
            input_stride: stride,
            ..Default::default()
        });
        let first = &self.members[0].config;
        let mut rule = OptimizerUniform::new(
            &first.optimizer,
            &first.grad_clip,
            k as u64 * self.stride,
            NORM_GROUPS,
        );
        rule.members = k;
        rule.member_quads = stride / 4;
        let rule_at = blocks.push(&rule);
        let uniforms = blocks.upload(device);
        let ranges: Vec<u32> = (0..layers.len())
            .flat_map(|l| {
                let (w, b) = (self.mlp.weight_range(l), self.mlp.bias_range(l));
                [
                    self.layout.weight[l] as u32,
                    w.len() as u32,
                    self.layout.bias[l] as u32,
                    b.len() as u32,
                ]
            })
            .collect();
        let ranges = storage_init(device, "member norm ranges", &ranges);
        let shape = |at: u64, size: usize| {
            entry(binding::SHAPE, &uniforms, at, NonZeroU64::new(size as u64))
        };
        let step = |binding: u32| {
            entry(
                binding,
                &self.steps,
                0,
                NonZeroU64::new(std::mem::size_of::<StepUniform>() as u64),
            )
        };
        let group = |kernel: &Kernel, entries: &[wgpu::BindGroupEntry]| {
            device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("members"),
                layout: &kernel.layout,
                entries,
            })
        };
        let mm = std::mem::size_of::<MatmulShape>();
        let matmul =
            |kernel: &Kernel, shape_at: u64, [a, bb, c, aux, out2]: [wgpu::BindGroupEntry; 5]| {
                group(
                    kernel,
                    &[
                        shape(shape_at, mm),
                        a,
                        bb,
                        c,
                        aux,
                        out2,
                        step(binding::matmul::STEP),
                        whole(binding::matmul::PARTIALS, &self.unused.partials),
                        whole(binding::matmul::MEMBER_DROPOUT, &self.member_steps),
                    ],
                )
            };
        use binding::matmul::{A, AUX, B, C, OUT2};
        let mut forward = Vec::new();
        let mut weight_grad = Vec::new();
        let mut bias_grad = Vec::new();
        let mut input_grad = Vec::new();
        for (l, (f_at, w_at, b_at, i_at)) in shapes.into_iter().enumerate() {
            let input = if l == 0 {
                &self.x_batch
            } else {
                &self.a[l - 1]
            };
            forward.push(matmul(
                &self.pipes.forward,
                f_at,
                [
                    whole(A, input),
                    at(B, &self.params, self.layout.weight[l]),
                    whole(C, &self.z[l]),
                    at(AUX, &self.params, self.layout.bias[l]),
                    whole(OUT2, &self.a[l]),
                ],
            ));
            weight_grad.push(matmul(
                &self.pipes.weight_grad,
                w_at,
                [
                    whole(A, &self.dz[l]),
                    whole(B, input),
                    at(C, &self.grads, self.layout.weight[l]),
                    whole(AUX, &self.unused.read),
                    whole(OUT2, &self.unused.write),
                ],
            ));
            bias_grad.push(group(
                &self.pipes.column_sums,
                &[
                    shape(b_at, std::mem::size_of::<ReduceShape>()),
                    whole(binding::reduce::INPUT, &self.dz[l]),
                    whole(binding::reduce::OUT, &self.grads),
                ],
            ));
            input_grad.push(i_at.map(|i_at| {
                matmul(
                    &self.pipes.input_grad,
                    i_at,
                    [
                        whole(A, &self.dz[l]),
                        at(B, &self.params, self.layout.weight[l]),
                        whole(C, &self.dz[l - 1]),
                        whole(AUX, &self.z[l - 1]),
                        whole(OUT2, &self.unused.write),
                    ],
                )
            }));
        }
        use binding::{data, loss, optimizer, reduce};
        let gather = group(
            &self.pipes.gather,
            &[
                shape(gather_at, std::mem::size_of::<GatherShape>()),
                step(data::STEP),
                whole(data::PERM, source.perm),
                whole(data::X, source.x),
                whole(data::TARGETS, source.targets),
                whole(data::X_BATCH, &self.x_batch),
                whole(data::TARGET_BATCH, &self.y_batch),
                whole(data::MEMBER_STEPS, &self.member_steps),
                whole(data::WEIGHTS, source.weights),
                whole(data::WEIGHT_BATCH, &self.w_batch),
            ],
        );
        let loss = group(
            &self.pipes.loss,
            &[
                shape(loss_at, std::mem::size_of::<LossShape>()),
                whole(loss::Z, &self.z[last]),
                whole(loss::OUTPUT, &self.a[last]),
                whole(loss::TARGETS, &self.y_batch),
                whole(loss::GRAD, &self.dz[last]),
                whole(loss::STATS, &self.unused.write),
                whole(loss::RESULTS, &self.results),
                step(loss::STEP),
                whole(loss::MEMBER_STEPS, &self.member_steps),
                whole(loss::WEIGHT_BATCH, &self.w_batch),
            ],
        );
        let sum_squares = group(
            &self.pipes.sum_squares,
            &[
                shape(squares_at, std::mem::size_of::<ReduceShape>()),
                whole(reduce::INPUT, &self.grads),
                whole(reduce::OUT, &self.clip),
            ],
        );
        let layer_norms = group(
            &self.pipes.layer_norms,
            &[
                shape(norms_at, std::mem::size_of::<ReduceShape>()),
                whole(reduce::INPUT, &self.grads),
                whole(reduce::OUT, &self.norm_results),
                step(reduce::STEP),
                whole(reduce::NORM_PARAMS, &self.params),
                whole(reduce::NORM_RANGES, &ranges),
            ],
        );
        let k64 = k as u64;
        let slot = |s: u64| at(0, &self.state, s * k64 * self.stride);
        let state_entry = |binding: u32, s: usize| {
            if s < self.state_slots {
                let mut e = slot(s as u64);
                e.binding = binding;
                e
            } else {
                whole(binding, &self.unused.states[binding as usize % 3])
            }
        };
        let update = group(
            &self.pipes.update,
            &[
                shape(rule_at, std::mem::size_of::<OptimizerUniform>()),
                step(optimizer::STEP),
                whole(optimizer::PARAMS, &self.params),
                whole(optimizer::GRADS, &self.grads),
                state_entry(optimizer::STATE0, 0),
                whole(optimizer::CLIP, &self.clip),
                state_entry(optimizer::STATE1, 1),
                state_entry(optimizer::STATE2, 2),
                whole(optimizer::MEMBER_STEPS, &self.member_steps),
            ],
        );
        Passes {
            gather,
            forward,
            weight_grad,
            bias_grad,
            input_grad,
            loss,
            sum_squares,
            layer_norms,
            update,
            _buffers: vec![uniforms, ranges],
        }
    }

    /// Records, runs and reads back `count` steps (slots 0..count) whose
    /// scalars `steps` holds; with `snapshot` the parameters and state are
    /// copied first (a divergence puts a member back to them). Returns the
    /// steps' results ([slot][member][loss, correct]) and, where a step
    /// sampled them, the layer norms ([slot][member][layer][grad, weight]).
    #[cfg(not(target_arch = "wasm32"))]
    #[allow(clippy::type_complexity)]
    pub(super) fn run_steps(
        &self,
        passes: &Passes,
        steps: &[MemberStep],
        count: usize,
        snapshot: bool,
    ) -> crate::error::Result<(Vec<f32>, Option<Vec<f32>>)> {
        let k = self.members.len();
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        if snapshot {
            encoder.copy_buffer_to_buffer(
                &self.params,
                0,
                &self.params_before,
                0,
                self.params.size(),
            );
            encoder.copy_buffer_to_buffer(
                &self.state,
                0,
                &self.state_before,
                0,
                self.state.size().min(self.state_before.size()),
            );
        }
        let mut sampled = false;
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for slot in 0..count {
                let sample = steps[slot * k..(slot + 1) * k]
                    .iter()
                    .any(|s| s.active != 0 && self.samples_norms(s.t as u64));
                sampled |= sample;
                self.record_step(&mut pass, passes, slot, Mode::Train { sample });
            }
        }
        self.ctx.submit(encoder.finish());
        let results = self.read_all(&self.results, (count * k * 2) as u64)?;
        let norms = if sampled {
            let floats = (count * k * self.mlp.layers().len() * 2) as u64;
            Some(self.read_all(&self.norm_results, floats)?)
        } else {
            None
        };
        Ok((results, norms))
    }

    /// Records one step in `slot`: the gather and the forward pass, the
    /// loss (not for a prediction), and for training the backward pass,
    /// the norms when it samples them, clipping's norm and the update.
    pub(super) fn record_step(
        &self,
        pass: &mut wgpu::ComputePass,
        passes: &Passes,
        slot: usize,
        mode: Mode,
    ) {
        let (train, sample) = match mode {
            Mode::Train { sample } => (true, sample),
            Mode::Evaluate | Mode::Predict => (false, false),
        };
        let k = self.members.len() as u32;
        let max = self.ctx.limits.max_compute_workgroups_per_dimension;
        let offset = [(slot as u64 * self.step_stride) as u32];
        let layers = self.mlp.layers();
        let (gx, gy) = grid(
            (self.rows * (self.mlp.inputs() + self.mlp.outputs() + 1)) as u64,
            256,
            max,
        );
        pass.set_pipeline(&self.pipes.gather.pipeline);
        pass.set_bind_group(0, &passes.gather, &offset);
        pass.dispatch_workgroups(gx, gy, k);
        for (l, layer) in layers.iter().enumerate() {
            let (x, y) =
                super::super::dispatch::matmul_grid(&self.tiling, self.rows, layer.outputs);
            pass.set_pipeline(&self.pipes.forward.pipeline);
            pass.set_bind_group(0, &passes.forward[l], &offset);
            pass.dispatch_workgroups(x, y, k);
        }
        if mode == Mode::Predict {
            return;
        }
        pass.set_pipeline(&self.pipes.loss.pipeline);
        pass.set_bind_group(0, &passes.loss, &offset);
        pass.dispatch_workgroups(1, 1, k);
        if !train {
            return;
        }
        for (l, layer) in layers.iter().enumerate().rev() {
            let (x, y) =
                super::super::dispatch::matmul_grid(&self.tiling, layer.outputs, layer.inputs);
            pass.set_pipeline(&self.pipes.weight_grad.pipeline);
            pass.set_bind_group(0, &passes.weight_grad[l], &offset);
            pass.dispatch_workgroups(x, y, k);
            let (x, y) = Kernels::column_sums_groups(layer.outputs, max);
            pass.set_pipeline(&self.pipes.column_sums.pipeline);
            pass.set_bind_group(0, &passes.bias_grad[l], &[]);
            pass.dispatch_workgroups(x, y, k);
            if let Some(group) = &passes.input_grad[l] {
                let (x, y) =
                    super::super::dispatch::matmul_grid(&self.tiling, self.rows, layer.inputs);
                pass.set_pipeline(&self.pipes.input_grad.pipeline);
                pass.set_bind_group(0, group, &offset);
                pass.dispatch_workgroups(x, y, k);
            }
        }
        if sample {
            pass.set_pipeline(&self.pipes.layer_norms.pipeline);
            pass.set_bind_group(0, &passes.layer_norms, &offset);
            pass.dispatch_workgroups(layers.len() as u32, 2, k);
        }
        if self.clip_norm {
            pass.set_pipeline(&self.pipes.sum_squares.pipeline);
            pass.set_bind_group(0, &passes.sum_squares, &[]);
            pass.dispatch_workgroups(NORM_GROUPS, 1, k);
        }
        let kernel = if self.clip_norm {
            &self.pipes.update_clipped
        } else {
            &self.pipes.update
        };
        let (x, y) = grid(self.members.len() as u64 * self.stride / 4, 256, max);
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, &passes.update, &offset);
        pass.dispatch_workgroups(x, y, 1);
    }
}
