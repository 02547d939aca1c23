//! `retroprop predict` and `evaluate`: a saved model on a data file.

use crate::cli::{EvaluateArgs, PredictArgs};
use crate::data::{load_inputs, load_labelled};
use retroprop::io::parquet::{Column, write_parquet};
use retroprop::io::{SavedModel, load_model};
use retroprop::loss::argmax;
use retroprop::{Device, Loss, TrainConfig, Trainer};
use std::path::Path;

type Result<T> = std::result::Result<T, String>;

fn text<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn open_model(path: &Path, device: Device) -> Result<(SavedModel, Trainer)> {
    let model = load_model(path)
        .and_then(|m| m.complete(path))
        .map_err(text)?;
    let config = TrainConfig::default().loss(model.loss).device(device);
    let trainer =
        Trainer::with_parameters(model.mlp.clone(), model.params.clone(), config).map_err(text)?;
    if let Some(why) = trainer.device_fallback() {
        eprintln!("note: --device auto runs on the CPU: {why}");
    }
    Ok((model, trainer))
}

/// The predictions as named columns, whichever file they go to:
/// cross_entropy's class and probabilities (`class`, `p0`, …),
/// bce_with_logits's 0/1 labels and probabilities (`label0`, …, `p0`, …),
/// the regression's values (`y0`, …).
fn prediction_columns(loss: Loss, outputs: &[f32], width: usize) -> Vec<(String, Column)> {
    let column = |j: usize, values: &[f32]| -> Vec<f32> {
        values.chunks_exact(width).map(|row| row[j]).collect()
    };
    let probabilities = || loss.probabilities(outputs, width);
    match loss {
        Loss::CrossEntropy => {
            let p = probabilities();
            let classes = outputs
                .chunks_exact(width)
                .map(|row| argmax(row) as i64)
                .collect();
            std::iter::once(("class".to_string(), Column::Int64(classes)))
                .chain((0..width).map(|j| (format!("p{j}"), Column::Float32(column(j, &p)))))
                .collect()
        }
        Loss::BceWithLogits => {
            let p = probabilities();
            let labels = |j: usize| {
                Column::Int64(
                    outputs
                        .chunks_exact(width)
                        .map(|row| (row[j] > 0.0) as i64)
                        .collect(),
                )
            };
            (0..width)
                .map(|j| (format!("label{j}"), labels(j)))
                .chain((0..width).map(|j| (format!("p{j}"), Column::Float32(column(j, &p)))))
                .collect()
        }
        Loss::Mse | Loss::HalfMse => (0..width)
            .map(|j| (format!("y{j}"), Column::Float32(column(j, outputs))))
            .collect(),
    }
}

/// The columns as CSV: a header of their names, then a line a row.
fn csv(columns: &[(String, Column)]) -> String {
    let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
    let mut out = names.join(",") + "\n";
    let rows = columns.first().map_or(0, |(_, c)| match c {
        Column::Int64(v) => v.len(),
        Column::Float32(v) => v.len(),
    });
    for row in 0..rows {
        let fields: Vec<String> = columns
            .iter()
            .map(|(_, c)| match c {
                Column::Int64(v) => v[row].to_string(),
                Column::Float32(v) => v[row].to_string(),
            })
            .collect();
        out += &(fields.join(",") + "\n");
    }
    out
}

fn is_parquet(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("pq"))
}

pub fn predict(args: PredictArgs) -> Result<()> {
    let (model, mut trainer) = open_model(&args.model, args.device)?;
    let inputs = model.mlp.inputs();
    let spec = args.columns.spec(1);
    let mut x = load_inputs(&args.data, inputs, &spec).map_err(text)?;
    if let Some(s) = &model.standardizer {
        s.apply_rows(&mut x).map_err(text)?;
    }
    let outputs = trainer.predict(&x).map_err(text)?;
    let columns = prediction_columns(model.loss, &outputs, model.mlp.outputs());
    match &args.out {
        Some(path) if is_parquet(path) => write_parquet(path, &columns).map_err(text)?,
        Some(path) => retroprop::io::write_atomic(path, csv(&columns).as_bytes()).map_err(text)?,
        None => {
            use std::io::Write;
            // A closed pipe (`| head`) is the reader's choice, not an error.
            match std::io::stdout().lock().write_all(csv(&columns).as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(format!("standard output: {e}"));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

pub fn evaluate(args: EvaluateArgs) -> Result<()> {
    let (model, mut trainer) = open_model(&args.model, args.device)?;
    // Without --targets, as many target columns as the model has outputs
    // (one of class labels for cross-entropy).
    let targets = args.targets.unwrap_or(if model.loss.takes_classes() {
        1
    } else {
        model.mlp.outputs()
    });
    let spec = args.columns.spec(targets);
    let mut data = load_labelled(Some(&args.data), &spec, Some(model.loss))
        .map_err(text)?
        .data;
    if data.features() != model.mlp.inputs() {
        return Err(format!(
            "{}: {} feature columns, but the model takes {} inputs",
            args.data.display(),
            data.features(),
            model.mlp.inputs()
        ));
    }
    if let Some(s) = &model.standardizer {
        s.apply(&mut data).map_err(text)?;
    }
    let eval = trainer.evaluate(&data).map_err(text)?;
    let mut line = format!(
        "{} rows: loss ({}) {:.6}",
        data.rows(),
        model.loss,
        eval.loss
    );
    if let Some(a) = eval.accuracy {
        line += &format!(", accuracy {:.2}%", 100.0 * a);
    }
    println!("{line}");
    Ok(())
}
