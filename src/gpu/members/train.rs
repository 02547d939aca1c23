//! Training steps of every member at once: windows of steps, each
//! member's scalars, a divergence put back and stepped again alone.

use super::super::resources::storage_init;
use super::super::uniforms::StepUniform;
use super::passes::{Passes, Source};
use super::{GpuMembers, MemberPlan, MemberStep};
use crate::backend::{LayerNorms, StepsReport};
use crate::dropout::Dropout;
use crate::error::{Error, Kept, Result};
use crate::loss::Loss;
use crate::optim::UpdateRule;
use crate::stop::StopFlag;

/// Where a member's steps stand in a call.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Steps it takes in the call.
    steps: usize,
    report: StepsReport,
    diverged: Option<(u64, f64)>,
}

impl GpuMembers {
    /// Trains the planned members together, the others taking no step
    /// (see [`MemberPlan`]): each planned member's steps over its order,
    /// in batches of the run's size. Returns each planned member's report,
    /// in the plans' order, or its divergence ([`Error::Diverged`], with
    /// the member's parameters, state and t from before the step that
    /// diverged). The stop flag is checked before each window of steps.
    ///
    /// # Errors
    /// No data uploaded, an order naming a row past the data, the device.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn train(&mut self, plans: &[MemberPlan]) -> Result<Vec<Result<StepsReport>>> {
        let data_rows = self.resident_rows()?;
        self.generation += 1;
        for plan in plans {
            crate::backend::checks::steps(plan.order, data_rows, self.rows)?;
        }
        let (perm, stride) = self.orders(plans);
        let resident = self.resident.as_ref().expect("checked by resident_rows");
        let passes = self.passes(
            &Source {
                x: &resident.x,
                targets: &resident.targets,
                weights: &resident.weights,
                weighted: resident.weighted,
                data_rows,
                perm: &perm,
                stride,
            },
            false,
        );
        let mut progress: Vec<Progress> = plans
            .iter()
            .map(|p| Progress {
                steps: (p.order.len().div_ceil(self.rows) as u64).min(p.max_steps) as usize,
                ..Progress::default()
            })
            .collect();
        let total = progress.iter().map(|p| p.steps).max().unwrap_or(0);
        let mut done = 0;
        while done < total {
            if self.stop_flag.as_ref().is_some_and(StopFlag::is_requested) {
                for p in &mut progress {
                    p.report.stopped = p.report.steps < p.steps as u64;
                }
                break;
            }
            let window = (total - done).min(self.slots);
            self.run_window(plans, &mut progress, &passes, done..done + window)?;
            done += window;
        }
        Ok(progress
            .into_iter()
            .zip(plans)
            .map(|(p, plan)| match p.diverged {
                Some((step, loss)) => Err(Error::Diverged {
                    step,
                    loss,
                    kept: Kept {
                        steps: self.members[plan.member].t,
                        epoch: 0,
                        rows_done: p.report.rows,
                        loss_sum: p.report.loss_sum,
                    },
                }),
                None => Ok(p.report),
            })
            .collect())
    }

    /// Steps `window` of the call: each member's scalars written, the
    /// steps recorded and run, their results read back and taken in. A
    /// member that diverged is put back to where it was before the window
    /// and steps again alone up to the step before the bad one.
    #[cfg(not(target_arch = "wasm32"))]
    fn run_window(
        &mut self,
        plans: &[MemberPlan],
        progress: &mut [Progress],
        passes: &Passes,
        window: std::ops::Range<usize>,
    ) -> Result<()> {
        let active: Vec<bool> = progress.iter().map(|p| p.diverged.is_none()).collect();
        let t_before: Vec<u64> = self.members.iter().map(|m| m.t).collect();
        let steps = self.write_window(plans, progress, &active, window.clone());
        let (results, norms) = self.run_steps(passes, &steps, window.len(), true)?;
        let k = self.members.len();
        for (i, plan) in plans.iter().enumerate() {
            if !active[i] {
                continue;
            }
            let m = plan.member;
            for (slot, s) in window.clone().enumerate() {
                let own = steps[slot * k + m];
                if own.active == 0 {
                    continue;
                }
                let loss = results[2 * (slot * k + m)] as f64;
                if !loss.is_finite() {
                    progress[i].diverged = Some((own.t as u64, loss));
                    self.replay(plans, i, &t_before, progress, passes, window.start..s)?;
                    break;
                }
                let batch = &plan.order[s * self.rows..((s + 1) * self.rows).min(plan.order.len())];
                let weight = self.batch_weight(m, batch);
                let report = &mut progress[i].report;
                report.loss_sum += loss * weight;
                report.rows += batch.len();
                report.steps += 1;
                self.members[m].t = own.t as u64;
                if let Some(norms) = &norms
                    && self.samples_norms(own.t as u64)
                {
                    let layers = self.mlp.layers().len();
                    for layer in 0..layers {
                        let at = ((slot * k + m) * layers + layer) * 2;
                        report.norms.push(LayerNorms {
                            step: own.t as u64,
                            layer,
                            grad_norm: norms[at] as f64,
                            weight_norm: norms[at + 1] as f64,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// A member that diverged at the step after `steps` of this window:
    /// its parameters and state put back from the copies the window took
    /// at its start, its t from `t_before`, and those steps taken again by
    /// it alone.
    #[cfg(not(target_arch = "wasm32"))]
    fn replay(
        &mut self,
        plans: &[MemberPlan],
        i: usize,
        t_before: &[u64],
        progress: &mut [Progress],
        passes: &Passes,
        steps: std::ops::Range<usize>,
    ) -> Result<()> {
        let m = plans[i].member;
        let k = self.members.len() as u64;
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        let bytes = self.stride * 4;
        let at = m as u64 * bytes;
        encoder.copy_buffer_to_buffer(&self.params_before, at, &self.params, at, bytes);
        for slot in 0..self.state_slots as u64 {
            let at = (slot * k + m as u64) * bytes;
            encoder.copy_buffer_to_buffer(&self.state_before, at, &self.state, at, bytes);
        }
        self.ctx.submit(encoder.finish());
        self.members[m].t = t_before[m];
        if !steps.is_empty() {
            let alone: Vec<bool> = (0..plans.len()).map(|j| j == i).collect();
            let mut scratch: Vec<Progress> = progress.to_vec();
            let written = self.write_window(plans, &mut scratch, &alone, steps.clone());
            self.run_steps(passes, &written, steps.len(), false)?;
            if let Some(last) = written.chunks(k as usize).rev().find(|s| s[m].active != 0) {
                self.members[m].t = last[m].t as u64;
            }
        }
        self.ctx.wait()
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn read_all(&self, buffer: &wgpu::Buffer, floats: u64) -> Result<Vec<f32>> {
        let bytes = pollster::block_on(self.ctx.read_async(buffer, 0, floats * 4))?;
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }

    /// Every member's scalars at the steps of `window` (slot-major: slot s
    /// of member m at s · members + m), written to the device with each
    /// step's uniform; returns them.
    fn write_window(
        &self,
        plans: &[MemberPlan],
        progress: &mut [Progress],
        active: &[bool],
        window: std::ops::Range<usize>,
    ) -> Vec<MemberStep> {
        let k = self.members.len();
        let mut steps = vec![MemberStep::default(); window.len() * k];
        let mut uniforms = vec![0u8; window.len() * self.step_stride as usize];
        let mut t: Vec<u64> = self.members.iter().map(|m| m.t).collect();
        for (slot, s) in window.clone().enumerate() {
            let uniform = StepUniform {
                batch_start: (s * self.rows) as u32,
                slot: slot as u32,
                ..StepUniform::default()
            };
            let at = slot * self.step_stride as usize;
            uniforms[at..at + std::mem::size_of::<StepUniform>()]
                .copy_from_slice(bytemuck::bytes_of(&uniform));
            for (i, plan) in plans.iter().enumerate() {
                let m = plan.member;
                let rows = plan
                    .order
                    .len()
                    .saturating_sub(s * self.rows)
                    .min(self.rows);
                let takes = active[i] && s < progress[i].steps && rows > 0;
                let batch = &plan.order[(s * self.rows).min(plan.order.len())..][..rows];
                if takes {
                    t[m] += 1;
                }
                steps[slot * k + m] =
                    self.member_step(m, rows, takes, t[m], plan.lr, self.batch_weight(m, batch));
            }
        }
        self.ctx.queue.write_buffer(&self.steps, 0, &uniforms);
        self.ctx
            .queue
            .write_buffer(&self.member_steps, 0, bytemuck::cast_slice(&steps));
        steps
    }

    /// Member `m`'s scalars at a step of `rows` rows (of weight
    /// `weight`), its `t`-th, at `lr`, when it `takes` it.
    fn member_step(
        &self,
        m: usize,
        rows: usize,
        takes: bool,
        t: u64,
        lr: f64,
        weight: f64,
    ) -> MemberStep {
        let own = &self.members[m];
        let rule = UpdateRule { lr, ..own.rule };
        let scalars = rule.scalars(t.max(1));
        let width = match self.loss {
            Loss::CrossEntropy => 1.0,
            _ => self.mlp.outputs() as f64,
        };
        let dropout = own.dropout.unwrap_or(Dropout {
            threshold: 0,
            scale: 1.0,
        });
        MemberStep {
            rows: if takes { rows as u32 } else { 0 },
            active: takes as u32,
            t: t.min(u32::MAX as u64) as u32,
            dropout_threshold: dropout.threshold,
            dropout_scale: dropout.scale,
            dropout_seed: own.seed,
            inv_norm: if weight > 0.0 {
                (1.0 / (weight * width)) as f32
            } else {
                0.0
            },
            lr: scalars.lr as f32,
            step_size: scalars.step_size as f32,
            bias_correction2_sqrt: scalars.bias_correction2_sqrt as f32,
            adagrad_lr: scalars.adagrad_lr as f32,
            decay: scalars.decay as f32,
            momentum: rule.momentum as f32,
            dampening: rule.dampening as f32,
            beta1: rule.beta1 as f32,
            beta2: rule.beta2 as f32,
            alpha: rule.alpha as f32,
            eps: rule.eps as f32,
            weight_decay: rule.weight_decay as f32,
            clip_norm: own.config.grad_clip.max_norm.unwrap_or(0.0) as f32,
            clip_value: own.config.grad_clip.max_value.unwrap_or(0.0) as f32,
            _pad: [0; 3],
        }
    }

    /// Σ of member `m`'s weights of `rows` (their count without weights).
    fn batch_weight(&self, m: usize, rows: &[u32]) -> f64 {
        match self.resident.as_ref().and_then(|r| r.host_weights.get(m)) {
            Some(Some(w)) => rows.iter().map(|&r| w[r as usize] as f64).sum(),
            _ => rows.len() as f64,
        }
    }

    /// Whether step `t` samples the per-layer norms.
    pub(super) fn samples_norms(&self, t: u64) -> bool {
        self.norms_every.is_some_and(|n| t.is_multiple_of(n))
    }

    /// The rows of the resident data, or an error before an upload.
    fn resident_rows(&self) -> Result<usize> {
        self.resident
            .as_ref()
            .map(|r| r.rows)
            .ok_or_else(|| Error::Config("no training data uploaded to the members run".into()))
    }

    /// Each planned member's order, `stride` rows apart ([members][stride]).
    fn orders(&self, plans: &[MemberPlan]) -> (wgpu::Buffer, usize) {
        let stride = plans
            .iter()
            .map(|p| p.order.len())
            .max()
            .unwrap_or(1)
            .max(1);
        let mut perm = vec![0u32; self.members.len() * stride];
        for plan in plans {
            let at = plan.member * stride;
            perm[at..at + plan.order.len()].copy_from_slice(plan.order);
        }
        (
            storage_init(&self.ctx.device, "member orders", &perm),
            stride,
        )
    }
}
