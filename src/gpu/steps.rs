//! The steps of a call, in windows of [`WINDOW`] steps with at most two
//! submissions in flight: after submitting window i the backend waits for
//! window i − 1, reads its losses (and norms) back, and only then checks
//! the stop flag and records window i + 1. With the data streamed from
//! host memory a window is a submission a pass, and the same rule holds
//! pass by pass, across the windows' seams: at most two passes in flight.
//! On a hardware GPU `submit` returns at once: a loop that never waited
//! queued a whole epoch (or a whole `train_steps(n)`) within milliseconds,
//! and a stop then waited for all of it. The uniform blocks, result slots
//! and norm slots form a ring of two windows, so their buffers are sized
//! per window, not per call.

use super::backend::GpuBackend;
use super::context::Submitted;
use super::plan::PassKey;
use super::resources::Scratch;
use super::uniforms::StepUniform;
use super::window::{Batch, InFlight, StepAt, WINDOW};
use crate::backend::{LayerNorms, StepsReport};
use crate::data::Dataset;
use crate::error::Result;
use crate::stop::StopFlag;

/// What the windows of a call came to: the steps that ran whole, and the
/// first step whose loss was not finite, with that loss, if one was.
pub(crate) struct WindowsRun {
    pub(crate) report: StepsReport,
    pub(crate) diverged: Option<(usize, f32)>,
    /// Steps submitted (and run), including any after a bad one.
    pub(crate) submitted: usize,
}

impl GpuBackend {
    /// Runs `batches` (rows of `order`) as steps from `self.t + 1` at
    /// learning rate `lr`, window by window; the parameters and optimizer
    /// state from before them are kept (`snapshot`) until the call ends.
    /// Stops submitting at a requested stop flag (within two windows of the
    /// request) or after a window with a non-finite loss.
    pub(crate) async fn run_windows(
        &mut self,
        train: &Dataset,
        order: &[u32],
        batches: &[Batch],
        lr: f64,
    ) -> Result<WindowsRun> {
        // Allocated when the backend opened: growing it now would drop the
        // plans (their bind groups hold it).
        debug_assert!(self.step_slots >= 2 * WINDOW);
        let first_t = self.t;
        let mut run = WindowsRun {
            report: StepsReport::default(),
            diverged: None,
            submitted: 0,
        };
        let mut pending: Option<(usize, Submitted)> = None;
        let mut in_flight = InFlight::after(self.unwaited.take());
        let mut scratch = Scratch::default();
        for (w, window) in batches.chunks(WINDOW).enumerate() {
            if self.stop_requested() {
                run.report.stopped = true;
                break;
            }
            let ring = w % 2;
            let first = w * WINDOW;
            let steps: Vec<StepUniform> = window
                .iter()
                .enumerate()
                .map(|(i, &(start, _))| {
                    let t = first_t + (first + i) as u64 + 1;
                    StepUniform::new(&self.rule, t, lr, start as u32, (ring * WINDOW + i) as u32)
                })
                .collect();
            self.write_steps(ring * WINDOW, &steps);
            let submitted = if self.streamed {
                let rows = (train, order);
                self.stream_window(rows, window, w, first_t, &mut scratch, &mut in_flight)
                    .await?
            } else {
                let submitted = self.submit_window(window, w, first_t);
                in_flight.push(&self.ctx, submitted.clone()).await?;
                submitted
            };
            run.submitted += window.len();
            if let Some((done, previous)) = pending.replace((w, submitted)) {
                self.read_window(&previous, done, batches, first_t, &mut run)
                    .await?;
                if run.diverged.is_some() {
                    break;
                }
            }
        }
        if let Some((done, last)) = pending.take() {
            self.ctx.finished(&last).await?;
            if run.diverged.is_none() {
                self.read_window(&last, done, batches, first_t, &mut run)
                    .await?;
            }
        }
        self.ctx.check()?;
        run.report.stopped |= run.submitted < batches.len() && run.diverged.is_none();
        Ok(run)
    }

    /// Whether the stop flag is requested.
    fn stop_requested(&self) -> bool {
        self.stop_flag.as_ref().is_some_and(StopFlag::is_requested)
    }

    /// The uniform block and result slot of step `i` of window `w`, and its
    /// number.
    fn step_at(w: usize, i: usize, first_t: u64) -> StepAt {
        StepAt {
            slot: (w % 2) * WINDOW + i,
            t: first_t + (w * WINDOW + i) as u64 + 1,
        }
    }

    /// Records window `w` (the data resident: each step gathers its batch
    /// on the device) into one submission, ending with the copy of its
    /// results into the window's read-back buffer.
    fn submit_window(&self, window: &[Batch], w: usize, first_t: u64) -> Submitted {
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        if w == 0 {
            self.snapshot(&mut encoder);
        }
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.mark_pass_start(&mut pass);
            for (i, &(start, end)) in window.iter().enumerate() {
                let at = GpuBackend::step_at(w, i, first_t);
                let len = end - start;
                for key in PassKey::training(len, len, 0, self.capacity) {
                    self.record(&mut pass, &self.plans[&key], at, true, true);
                }
                self.record_update(&mut pass, at, self.samples_norms(at.t));
            }
        }
        self.resolve_marks(&mut encoder);
        self.copy_window_results(&mut encoder, w, window.len());
        self.ctx.submit(encoder.finish())
    }

    /// Window `w` with the data in host memory (`rows`: the data set and
    /// the call's order of its rows): each pass's rows are gathered here,
    /// written and submitted, at most two submissions in flight (the
    /// call's `in_flight`, so that a window's first pass waits for the
    /// last of the window before), and what waits to be copied to the
    /// device stays one or two passes' rows. Returns the window's last
    /// submission.
    async fn stream_window(
        &self,
        (train, order): (&Dataset, &[u32]),
        window: &[Batch],
        w: usize,
        first_t: u64,
        scratch: &mut Scratch,
        in_flight: &mut InFlight,
    ) -> Result<Submitted> {
        let mut last = None;
        for (i, &(start, end)) in window.iter().enumerate() {
            let at = GpuBackend::step_at(w, i, first_t);
            let len = end - start;
            let keys: Vec<PassKey> = PassKey::training(len, len, 0, self.capacity).collect();
            for (p, key) in keys.iter().enumerate() {
                let first = start + key.offset;
                self.write_rows(train, &order[first..first + key.rows], scratch);
                let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
                if w == 0 && i == 0 && p == 0 {
                    self.snapshot(&mut encoder);
                }
                let closes_step = p + 1 == keys.len();
                {
                    let mut pass = encoder.begin_compute_pass(&Default::default());
                    self.mark_pass_start(&mut pass);
                    self.record(&mut pass, &self.plans[key], at, false, true);
                    if closes_step {
                        self.record_update(&mut pass, at, self.samples_norms(at.t));
                    }
                }
                self.resolve_marks(&mut encoder);
                if closes_step && i + 1 == window.len() {
                    self.copy_window_results(&mut encoder, w, window.len());
                }
                let submitted = self.ctx.submit(encoder.finish());
                last = Some(submitted.clone());
                in_flight.push(&self.ctx, submitted).await?;
            }
        }
        Ok(last.expect("a window has at least one step"))
    }

    /// Bytes of a window's read-back: its losses (two floats a step), then
    /// its layer norms (two floats a layer and step).
    fn window_readback_bytes(&self) -> (u64, u64) {
        let layers = self.mlp.layers().len() as u64;
        (WINDOW as u64 * 2 * 4, WINDOW as u64 * layers * 2 * 4)
    }

    /// Records the copy of window `w`'s results and layer norms (`steps`
    /// of them) into the read-back buffer of its ring slot.
    fn copy_window_results(&self, encoder: &mut wgpu::CommandEncoder, w: usize, steps: usize) {
        let ring = (w % 2) as u64;
        let (losses, norms) = self.window_readback_bytes();
        let layers = self.mlp.layers().len() as u64;
        let target = &self.window_readback[w % 2];
        let step_bytes = 2 * 4;
        encoder.copy_buffer_to_buffer(
            &self.results,
            ring * losses,
            target,
            0,
            steps as u64 * step_bytes,
        );
        if self.norms_every.is_some() {
            encoder.copy_buffer_to_buffer(
                &self.layer_norm_results,
                ring * norms,
                target,
                losses,
                steps as u64 * layers * step_bytes,
            );
        }
    }

    /// Waits for window `w` (its submission `done`), reads its losses and
    /// norms back, and adds them to `run`: stops at the first step whose
    /// loss is not finite.
    async fn read_window(
        &self,
        done: &Submitted,
        w: usize,
        batches: &[Batch],
        first_t: u64,
        run: &mut WindowsRun,
    ) -> Result<()> {
        let window = &batches[w * WINDOW..((w + 1) * WINDOW).min(batches.len())];
        let (losses, norms) = self.window_readback_bytes();
        let size = if self.norms_every.is_some() {
            losses + norms
        } else {
            losses
        };
        let readback = &self.window_readback[w % 2];
        let bytes = self.ctx.read_mapped(readback, size, done).await?;
        let values: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        let layers = self.mlp.layers().len();
        let norm_values = &values[values.len().min(2 * WINDOW)..];
        for (i, &(start, end)) in window.iter().enumerate() {
            let loss = values[2 * i];
            if !loss.is_finite() {
                run.diverged = Some((w * WINDOW + i, loss));
                return Ok(());
            }
            let at = GpuBackend::step_at(w, i, first_t);
            if self.samples_norms(at.t) {
                for layer in 0..layers {
                    let k = (i * layers + layer) * 2;
                    run.report.norms.push(LayerNorms {
                        step: at.t,
                        layer,
                        grad_norm: norm_values[k] as f64,
                        weight_norm: norm_values[k + 1] as f64,
                    });
                }
            }
            run.report.loss_sum += loss as f64 * (end - start) as f64;
            run.report.rows += end - start;
            run.report.steps += 1;
        }
        Ok(())
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::super::{GpuBackend, GpuOptions};
    use crate::activation::Activation;
    use crate::backend::{Backend, BackendConfig, BatchShare};
    use crate::data::{Dataset, Targets};
    use crate::loss::Loss;
    use crate::model::{Init, Mlp};
    use crate::optim::Adam;

    /// Every way the backend submits work keeps at most two submissions in
    /// flight, and two (the next is recorded while one runs), as far as the
    /// host knows (`GpuContext::most_in_flight`: made and not yet waited
    /// for): `train_steps` with the data resident (a submission a window)
    /// and streamed (a submission a pass, across the windows' seams),
    /// evaluation chunks, and a step in phases after one update or two, its
    /// batch two passes. 200 rows in steps of 2 are two windows; passes of 32
    /// rows; streamed past a binding of 1 KiB.
    #[test]
    fn at_most_two_submissions_are_in_flight_however_the_data_travels() {
        let rows = 200;
        let x: Vec<f32> = (0..rows * 4).map(|i| (i % 7) as f32 / 7.0 - 0.5).collect();
        let labels = (0..rows as u32).map(|i| i % 3).collect();
        let train = Dataset::new(x, 4, Targets::Classes(labels)).unwrap();
        let mlp = Mlp::new(&[4, 8, 3], Activation::Relu, Activation::Identity).unwrap();
        let config = BackendConfig::new(Loss::CrossEntropy, Adam::default().into());
        let order: Vec<u32> = (0..rows as u32).collect();
        for (how, max_binding_bytes) in [("resident", None), ("streamed", Some(1024))] {
            let options = GpuOptions {
                max_rows_per_pass: Some(32),
                max_binding_bytes,
                matmul: None,
            };
            let params = mlp.init(Init::TorchDefault, 1);
            let mut gpu =
                GpuBackend::new(&mlp, params, &config, options, false).unwrap_or_else(|e| {
                    panic!("a wgpu adapter is needed (apt-get install mesa-vulkan-drivers): {e}")
                });
            let data = gpu.upload(&train).unwrap();
            assert_eq!(gpu.streamed, max_binding_bytes.is_some(), "{how}");
            let check = |what: &str, gpu: &GpuBackend| {
                let most = gpu.ctx.most_in_flight();
                assert_eq!(
                    most, 2,
                    "{how} {what}: at most {most} submissions in flight"
                );
            };
            gpu.ctx.most_in_flight();
            let report = gpu.train_steps(&data, &order, 2, u64::MAX, 1e-3).unwrap();
            assert_eq!(report.steps, 100, "{how}");
            check("train_steps", &gpu);
            gpu.evaluate(&train).unwrap();
            check("evaluate", &gpu);
            let batch = BatchShare::whole(&order[..64]);
            gpu.forward_backward(&data, batch).unwrap();
            gpu.gradients().unwrap();
            gpu.update(1e-3).unwrap();
            gpu.forward_backward(&data, batch).unwrap();
            check("forward_backward after update", &gpu);
            gpu.gradients().unwrap();
            gpu.update(1e-3).unwrap();
            gpu.update(1e-3).unwrap();
            gpu.forward_backward(&data, batch).unwrap();
            check("forward_backward after two updates", &gpu);
        }
    }
}
