//! What training shows and writes: the progress bar, the metrics file and
//! the loss plot.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use retroprop::EpochRecord;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A progress bar over epochs, drawn only on a terminal and not with --quiet.
pub fn progress(epochs: usize, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(epochs as u64),
        if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] epoch {pos}/{len} {msg}")
            .expect("template is valid")
            .progress_chars("=> "),
    );
    bar
}

/// One line of the progress bar: loss and speed.
pub fn progress_message(record: &EpochRecord, samples: f64) -> String {
    let mut msg = format!("loss {:.4}", record.train_loss);
    if let Some(v) = &record.validation {
        msg += &format!(" val {:.4}", v.loss);
        if let Some(a) = v.accuracy {
            msg += &format!(" acc {:.2}%", 100.0 * a);
        }
    }
    if record.seconds > 0.0 {
        msg += &format!(" {:.0} samples/s", samples / record.seconds);
    }
    msg
}

/// Warnings about layers whose gradient vanishes (‖dW‖ < 1e-6 ‖W‖) or
/// explodes (‖dW‖ > 1e3 max(‖W‖, 1), or not finite); each layer is named
/// once for each.
#[derive(Default)]
pub struct NormWarnings {
    warned: std::collections::HashSet<(usize, bool)>,
}

impl NormWarnings {
    pub fn check(&mut self, norms: &[retroprop::LayerNorms]) -> Vec<String> {
        let mut out = Vec::new();
        for n in norms {
            let exploding = !n.grad_norm.is_finite() || n.grad_norm > 1e3 * n.weight_norm.max(1.0);
            let vanishing = n.grad_norm < 1e-6 * n.weight_norm;
            if (exploding || vanishing) && self.warned.insert((n.layer, exploding)) {
                out.push(if exploding {
                    format!(
                        "step {}: layer {}'s gradient norm {:.3e} is exploding (weight norm {:.3e}); try --clip-grad-norm or a lower --lr",
                        n.step, n.layer, n.grad_norm, n.weight_norm
                    )
                } else {
                    format!(
                        "step {}: layer {}'s gradient norm {:.3e} has vanished (weight norm {:.3e}); try relu or gelu activations, --weight-init kaiming_uniform, or fewer layers",
                        n.step, n.layer, n.grad_norm, n.weight_norm
                    )
                });
            }
        }
        out
    }
}

/// Per-epoch metrics, as CSV or JSON lines by the file's extension.
pub struct MetricsFile {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    json: bool,
}

impl MetricsFile {
    pub fn create(path: &Path) -> Result<MetricsFile, String> {
        let json = path
            .extension()
            .is_some_and(|e| e == "jsonl" || e == "json");
        let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut m = MetricsFile {
            path: path.to_path_buf(),
            file: std::io::BufWriter::new(file),
            json,
        };
        if !json {
            m.line("epoch,step,train_loss,val_loss,val_accuracy,lr,seconds".to_string())?;
        }
        Ok(m)
    }

    fn line(&mut self, line: String) -> Result<(), String> {
        writeln!(self.file, "{line}").map_err(|e| format!("{}: {e}", self.path.display()))
    }

    pub fn record(&mut self, r: &EpochRecord) -> Result<(), String> {
        if self.json {
            for n in &r.layer_norms {
                let line = serde_json::json!({
                    "kind": "layer_norms",
                    "step": n.step,
                    "layer": n.layer,
                    "grad_norm": n.grad_norm,
                    "weight_norm": n.weight_norm,
                })
                .to_string();
                self.line(line)?;
            }
        }
        let val_loss = r.validation.map(|v| v.loss);
        let accuracy = r.validation.and_then(|v| v.accuracy);
        let line = if self.json {
            serde_json::json!({
                "epoch": r.epoch,
                "step": r.step,
                "train_loss": r.train_loss,
                "val_loss": val_loss,
                "val_accuracy": accuracy,
                "lr": r.lr,
                "seconds": r.seconds,
            })
            .to_string()
        } else {
            let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
            format!(
                "{},{},{},{},{},{},{}",
                r.epoch,
                r.step,
                r.train_loss,
                opt(val_loss),
                opt(accuracy),
                r.lr,
                r.seconds
            )
        };
        self.line(line)?;
        self.file
            .flush()
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

/// Draws training (and validation) loss per epoch into a PNG.
pub fn plot(path: &Path, epochs: &[EpochRecord]) -> Result<(), String> {
    use plotters::prelude::*;
    static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    let fail = |e: &dyn std::fmt::Display| format!("{}: cannot draw the plot: {e}", path.display());
    if epochs.is_empty() {
        return Err(format!("{}: no epochs to plot", path.display()));
    }
    let train: Vec<(f64, f64)> = epochs
        .iter()
        .map(|r| (r.epoch as f64, r.train_loss))
        .collect();
    let val: Vec<(f64, f64)> = epochs
        .iter()
        .filter_map(|r| r.validation.map(|v| (r.epoch as f64, v.loss)))
        .collect();
    let all = train
        .iter()
        .chain(&val)
        .map(|p| p.1)
        .filter(|v| v.is_finite());
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let log_scale = lo > 0.0 && hi / lo > 20.0;
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let x_max = (epochs.len() as f64).max(2.0);
    let mut builder = ChartBuilder::on(&root);
    let chart = builder
        .caption("loss per epoch", ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .y_desc("loss")
                .draw()
                .map_err(|e| fail(&e))?;
            chart
                .draw_series(LineSeries::new(train.iter().copied(), BLUE.stroke_width(2)))
                .map_err(|e| fail(&e))?
                .label("train")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
            if !val.is_empty() {
                chart
                    .draw_series(LineSeries::new(val.iter().copied(), RED.stroke_width(2)))
                    .map_err(|e| fail(&e))?
                    .label("validation")
                    .legend(|(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .background_style(WHITE)
                .border_style(BLACK)
                .draw()
                .map_err(|e| fail(&e))?;
        }};
    }
    if log_scale {
        draw!(
            chart
                .build_cartesian_2d(1f64..x_max, (lo * 0.9..hi * 1.1).log_scale())
                .map_err(|e| fail(&e))?
        );
    } else {
        let pad = ((hi - lo) * 0.05).max(1e-9);
        draw!(
            chart
                .build_cartesian_2d(1f64..x_max, (lo - pad).max(0.0)..hi + pad)
                .map_err(|e| fail(&e))?
        );
    }
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}
