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
pub struct NormWarnings {
    warned: std::collections::HashSet<(usize, bool)>,
    /// Each dense layer in words (`Mlp::layer_name`).
    names: Vec<String>,
    /// Whether the network is residual already (else the cure for a
    /// vanishing gradient names --blocks).
    residual: bool,
}

impl NormWarnings {
    pub fn new(mlp: &retroprop::Mlp) -> NormWarnings {
        NormWarnings {
            warned: Default::default(),
            names: (0..mlp.layers().len()).map(|l| mlp.layer_name(l)).collect(),
            residual: mlp.residual_spec().is_some(),
        }
    }

    pub fn check(&mut self, norms: &[retroprop::LayerNorms]) -> Vec<String> {
        let mut out = Vec::new();
        for n in norms {
            let exploding = !n.grad_norm.is_finite() || n.grad_norm > 1e3 * n.weight_norm.max(1.0);
            let vanishing = n.grad_norm < 1e-6 * n.weight_norm;
            if (exploding || vanishing) && self.warned.insert((n.layer, exploding)) {
                let layer = self
                    .names
                    .get(n.layer)
                    .cloned()
                    .unwrap_or_else(|| format!("layer {}", n.layer));
                let cure = if self.residual {
                    "try relu or gelu activations, --norm batch or layer, or fewer blocks"
                } else {
                    "try relu or gelu activations, --weight-init kaiming_uniform, fewer layers, or residual blocks (--blocks)"
                };
                out.push(if exploding {
                    format!(
                        "step {}: {layer}'s gradient norm {:.3e} is exploding (weight norm {:.3e}); try --clip-grad-norm or a lower --lr",
                        n.step, n.grad_norm, n.weight_norm
                    )
                } else {
                    format!(
                        "step {}: {layer}'s gradient norm {:.3e} has vanished (weight norm {:.3e}); {cure}",
                        n.step, n.grad_norm, n.weight_norm
                    )
                });
            }
        }
        out
    }
}

/// The first line of a CSV metrics file.
const CSV_HEADER: &str = "epoch,step,train_loss,val_loss,val_accuracy,lr,seconds";

/// Per-epoch metrics, as CSV or JSON lines by the file's extension.
///
/// Nothing is written before the first record, so a run that records
/// nothing (stopped during start-up) leaves the file as it was. A resumed
/// run continues the file of the run it resumes: the lines of the epochs
/// its checkpoint holds stay, later ones (written after the checkpoint)
/// go, and its own follow, with times counted on from the last kept.
///
/// A run of members writes each member's epochs, a line each, with the
/// member and its candidate first (`member,candidate,epoch,…`; `"member"`
/// and `"candidate"` in JSON, on its layer-norm lines too).
pub struct MetricsFile {
    path: PathBuf,
    /// Open once the first record is written.
    file: Option<std::io::BufWriter<std::fs::File>>,
    /// What the file starts with: the header, or a resumed run's kept lines.
    kept: String,
    json: bool,
    /// Each member's candidate; empty for a run of one network.
    candidates: Vec<usize>,
    /// The kept epochs, each with its member (0 for one network), for the
    /// plot of the whole run.
    earlier: Vec<(usize, EpochRecord)>,
    /// Seconds of each member's kept epochs, added to this run's.
    seconds_before: Vec<f64>,
}

impl MetricsFile {
    /// The metrics file at `path` of a run starting afresh (`resumed_at`
    /// `None`) or resumed from a checkpoint of (epochs done, steps).
    pub fn open(path: &Path, resumed_at: Option<(u64, u64)>) -> Result<MetricsFile, String> {
        MetricsFile::open_members(path, Vec::new(), resumed_at.map(|at| vec![at]))
    }

    /// The metrics file of a run of members, member m of candidate
    /// `candidates[m]`, resumed from a checkpoint where member m stood at
    /// `resumed_at[m]`. No candidates: a run of one network.
    pub fn open_members(
        path: &Path,
        candidates: Vec<usize>,
        resumed_at: Option<Vec<(u64, u64)>>,
    ) -> Result<MetricsFile, String> {
        let json = path
            .extension()
            .is_some_and(|e| e == "jsonl" || e == "json");
        let fail = |e: std::io::Error| format!("{}: {e}", path.display());
        // Whether it can be written, before any training: opened to
        // append, which leaves what is there.
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(fail)?;
        let header = match (json, candidates.is_empty()) {
            (true, _) => String::new(),
            (false, true) => format!("{CSV_HEADER}\n"),
            (false, false) => format!("member,candidate,{CSV_HEADER}\n"),
        };
        let mut m = MetricsFile {
            path: path.to_path_buf(),
            file: None,
            kept: header,
            json,
            seconds_before: vec![0.0; candidates.len().max(1)],
            candidates,
            earlier: Vec::new(),
        };
        if let Some(at) = resumed_at {
            let text = std::fs::read_to_string(path).map_err(fail)?;
            m.keep(&text, &at);
        }
        Ok(m)
    }

    /// Keeps the lines of `text` (the file so far) of each member m up to
    /// `at[m]`, (epochs, steps).
    fn keep(&mut self, text: &str, at: &[(u64, u64)]) {
        let number = |v: Option<&serde_json::Value>| v.and_then(serde_json::Value::as_f64);
        let members = !self.candidates.is_empty();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (member, record) = if self.json {
                let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                let member = number(value.get("member")).unwrap_or(0.0) as usize;
                let Some(&(_, steps)) = at.get(member) else {
                    continue;
                };
                if value.get("kind").is_some() {
                    if number(value.get("step")).is_some_and(|s| s <= steps as f64) {
                        self.kept += &format!("{line}\n");
                    }
                    continue;
                }
                let loss = number(value.get("val_loss"));
                let record = EpochRecord {
                    epoch: number(value.get("epoch")).unwrap_or(f64::MAX) as usize,
                    step: number(value.get("step")).unwrap_or(0.0) as u64,
                    train_loss: number(value.get("train_loss")).unwrap_or(f64::NAN),
                    validation: loss.map(|loss| retroprop::Evaluation {
                        loss,
                        accuracy: number(value.get("val_accuracy")),
                    }),
                    lr: number(value.get("lr")).unwrap_or(0.0),
                    seconds: number(value.get("seconds")).unwrap_or(0.0),
                    layer_norms: Vec::new(),
                };
                (member, record)
            } else {
                if line.starts_with("epoch,") || line.starts_with("member,") {
                    continue;
                }
                let fields: Vec<Option<f64>> =
                    line.split(',').map(|f| f.trim().parse().ok()).collect();
                // A run of members' lines start with the member and its
                // candidate.
                let first = if members { 2 } else { 0 };
                let field = |i: usize| fields.get(first + i).copied().flatten();
                let member = match members {
                    true => fields.first().copied().flatten().unwrap_or(f64::MAX) as usize,
                    false => 0,
                };
                let record = EpochRecord {
                    epoch: field(0).unwrap_or(f64::MAX) as usize,
                    step: field(1).unwrap_or(0.0) as u64,
                    train_loss: field(2).unwrap_or(f64::NAN),
                    validation: field(3).map(|loss| retroprop::Evaluation {
                        loss,
                        accuracy: field(4),
                    }),
                    lr: field(5).unwrap_or(0.0),
                    seconds: field(6).unwrap_or(0.0),
                    layer_norms: Vec::new(),
                };
                (member, record)
            };
            // An epoch the checkpoint holds whole (not one cut short by
            // --steps, which the resumed run records again).
            let Some(&(epochs, steps)) = at.get(member) else {
                continue;
            };
            if record.epoch as u64 <= epochs && record.step <= steps {
                self.kept += &format!("{line}\n");
                self.seconds_before[member] = record.seconds;
                self.earlier.push((member, record));
            }
        }
    }

    /// The epochs of the run before this invocation (resumed runs).
    pub fn earlier(&self) -> Vec<EpochRecord> {
        self.earlier.iter().map(|(_, r)| r.clone()).collect()
    }

    /// The epochs of a run of members before this invocation, each with
    /// its member.
    pub fn earlier_members(&self) -> &[(usize, EpochRecord)] {
        &self.earlier
    }

    fn line(&mut self, line: String) -> Result<(), String> {
        let fail = |e: std::io::Error| format!("{}: {e}", self.path.display());
        if self.file.is_none() {
            std::fs::write(&self.path, &self.kept).map_err(fail)?;
            let file = std::fs::OpenOptions::new()
                .append(true)
                .open(&self.path)
                .map_err(fail)?;
            self.file = Some(std::io::BufWriter::new(file));
        }
        let file = self.file.as_mut().expect("opened above");
        writeln!(file, "{line}").map_err(|e| format!("{}: {e}", self.path.display()))
    }

    /// Writes a run of one network's epoch.
    pub fn record(&mut self, r: &EpochRecord) -> Result<(), String> {
        self.record_member(0, r)
    }

    /// Writes member `member`'s epoch (a run of one network: member 0).
    pub fn record_member(&mut self, member: usize, r: &EpochRecord) -> Result<(), String> {
        let seconds = self.seconds_before[member] + r.seconds;
        let candidate = self.candidates.get(member).copied();
        // JSON lines of a member name it and its candidate.
        let owned = |mut value: serde_json::Value| {
            if let (Some(candidate), Some(object)) = (candidate, value.as_object_mut()) {
                object.insert("member".into(), member.into());
                object.insert("candidate".into(), candidate.into());
            }
            value.to_string()
        };
        if self.json {
            for n in &r.layer_norms {
                let line = owned(serde_json::json!({
                    "kind": "layer_norms",
                    "step": n.step,
                    "layer": n.layer,
                    "grad_norm": n.grad_norm,
                    "weight_norm": n.weight_norm,
                }));
                self.line(line)?;
            }
        }
        let val_loss = r.validation.map(|v| v.loss);
        let accuracy = r.validation.and_then(|v| v.accuracy);
        let line = if self.json {
            owned(serde_json::json!({
                "epoch": r.epoch,
                "step": r.step,
                "train_loss": r.train_loss,
                "val_loss": val_loss,
                "val_accuracy": accuracy,
                "lr": r.lr,
                "seconds": seconds,
            }))
        } else {
            let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
            let owner = candidate.map_or(String::new(), |c| format!("{member},{c},"));
            format!(
                "{owner}{},{},{},{},{},{},{}",
                r.epoch,
                r.step,
                r.train_loss,
                opt(val_loss),
                opt(accuracy),
                r.lr,
                seconds
            )
        };
        self.line(line)?;
        self.file
            .as_mut()
            .expect("opened by line")
            .flush()
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

/// One line of a plot: its points, colour, width and legend entry.
pub struct Series {
    /// Its entry in the legend; none for a line the legend leaves out.
    pub label: Option<String>,
    /// (epoch, loss).
    pub points: Vec<(f64, f64)>,
    /// Red, green, blue.
    pub color: (u8, u8, u8),
    /// Opacity, 0 to 1.
    pub opacity: f64,
    /// Pixels.
    pub width: u32,
}

impl Series {
    /// A run's training and validation loss per epoch.
    pub fn of_run(epochs: &[EpochRecord]) -> Vec<Series> {
        let train = epochs
            .iter()
            .map(|r| (r.epoch as f64, r.train_loss))
            .collect();
        let val: Vec<(f64, f64)> = epochs
            .iter()
            .filter_map(|r| r.validation.map(|v| (r.epoch as f64, v.loss)))
            .collect();
        let line = |label: &str, points, color| Series {
            label: Some(label.into()),
            points,
            color,
            opacity: 1.0,
            width: 2,
        };
        let mut series = vec![line("train", train, (0, 0, 255))];
        if !val.is_empty() {
            series.push(line("validation", val, (255, 0, 0)));
        }
        series
    }
}

/// The `i`-th of a palette of colours that stand apart.
pub fn palette(i: usize) -> (u8, u8, u8) {
    use plotters::style::{Color, Palette, Palette99};
    Palette99::pick(i).to_rgba().rgb()
}

/// Draws `series` (loss per epoch) into a PNG, under `caption`.
pub fn plot(path: &Path, caption: &str, series: &[Series]) -> Result<(), String> {
    use plotters::prelude::*;
    static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    let fail = |e: &dyn std::fmt::Display| format!("{}: cannot draw the plot: {e}", path.display());
    let points = || series.iter().flat_map(|s| s.points.iter());
    if points().next().is_none() {
        return Err(format!("{}: no epochs to plot", path.display()));
    }
    let all = points().map(|p| p.1).filter(|v| v.is_finite());
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let log_scale = lo > 0.0 && hi / lo > 20.0;
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let x_max = points().map(|p| p.0).fold(2.0, f64::max);
    let mut builder = ChartBuilder::on(&root);
    let chart = builder
        .caption(caption, ("sans-serif", 24))
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
            for s in series {
                let (r, g, b) = s.color;
                let style = RGBColor(r, g, b).mix(s.opacity).stroke_width(s.width);
                let drawn = chart
                    .draw_series(LineSeries::new(s.points.iter().copied(), style))
                    .map_err(|e| fail(&e))?;
                if let Some(label) = &s.label {
                    drawn
                        .label(label)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
                }
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
