//! `retroprop predict` and `evaluate`: a saved model on a data file.

use crate::cli::{EvaluateArgs, PredictArgs};
use crate::data::{load_inputs, load_labelled, stream_inputs, stream_labelled};
use retroprop::io::parquet::{Column, ColumnsWriter, write_parquet};
use retroprop::io::{AtomicFile, SavedModel, load_model};
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
    if args.stream {
        return predict_streamed(&args, &model, &mut trainer);
    }
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

/// Where streamed predictions go, a part at a time: a Parquet or CSV file
/// (whole, or not at all, once the last part is written), or standard
/// output.
enum Out {
    Parquet(ColumnsWriter<AtomicFile>),
    Csv(AtomicFile),
    Stdout(std::io::StdoutLock<'static>),
}

/// `predict --stream`: the inputs read a part at a time, each part's
/// predictions written before the next is read; the same bytes as
/// without `--stream`.
fn predict_streamed(args: &PredictArgs, model: &SavedModel, trainer: &mut Trainer) -> Result<()> {
    use std::io::Write;
    let spec = args.columns.spec(1);
    let inputs = stream_inputs(&args.data, model.mlp.inputs(), &spec)
        .map_err(text)?
        .with_standardizer(model.standardizer.clone());
    let (loss, width) = (model.loss, model.mlp.outputs());
    let mut out: Option<Out> = None;
    let written = trainer.predict_streamed(&inputs, |outputs| {
        let columns = prediction_columns(loss, outputs, width);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| retroprop::Error::Io { path, source }
        };
        let first = out.is_none();
        let out = match &mut out {
            Some(out) => out,
            None => out.insert(match &args.out {
                Some(path) if is_parquet(path) => Out::Parquet(ColumnsWriter::new(
                    AtomicFile::create(path)?,
                    &columns,
                    path,
                )?),
                Some(path) => Out::Csv(AtomicFile::create(path)?),
                None => Out::Stdout(std::io::stdout().lock()),
            }),
        };
        let mut text = csv(&columns);
        if !first {
            // The header went with the first part.
            text = text
                .split_once('\n')
                .map_or(String::new(), |(_, rows)| rows.to_string());
        }
        match out {
            Out::Parquet(writer) => writer.write(&columns),
            Out::Csv(file) => file
                .write_all(text.as_bytes())
                .map_err(io(args.out.as_deref().unwrap_or(Path::new("-")))),
            Out::Stdout(stdout) => match stdout.write_all(text.as_bytes()) {
                // A closed pipe (`| head`) is the reader's choice, not an error.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(io(Path::new("standard output"))(e))
                }
                _ => Ok(()),
            },
        }
    });
    let finished = match out {
        Some(Out::Parquet(writer)) => writer.finish().and_then(AtomicFile::finish),
        Some(Out::Csv(file)) => file.finish(),
        Some(Out::Stdout(_)) | None => Ok(()),
    };
    written.and(finished).map_err(text)?;
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
    if args.stream {
        let data = stream_labelled(&args.data, &spec, model.loss).map_err(text)?;
        let data = data.with_standardizer(model.standardizer.clone());
        check_inputs(&args.data, data.features(), &model)?;
        let eval = trainer.evaluate_streamed(&data).map_err(text)?;
        println!("{}", evaluation_line(data.rows(), model.loss, &eval));
        return Ok(());
    }
    let mut data = load_labelled(Some(&args.data), &spec, Some(model.loss))
        .map_err(text)?
        .data;
    check_inputs(&args.data, data.features(), &model)?;
    if let Some(s) = &model.standardizer {
        s.apply(&mut data).map_err(text)?;
    }
    let eval = trainer.evaluate(&data).map_err(text)?;
    println!("{}", evaluation_line(data.rows(), model.loss, &eval));
    Ok(())
}

/// An error unless the file has the model's inputs.
fn check_inputs(path: &Path, features: usize, model: &SavedModel) -> Result<()> {
    if features != model.mlp.inputs() {
        return Err(format!(
            "{}: {features} feature columns, but the model takes {} inputs",
            path.display(),
            model.mlp.inputs()
        ));
    }
    Ok(())
}

/// What `evaluate` prints: the rows, the loss and the accuracy.
fn evaluation_line(rows: usize, loss: Loss, eval: &retroprop::Evaluation) -> String {
    let mut line = format!("{rows} rows: loss ({loss}) {:.6}", eval.loss);
    if let Some(a) = eval.accuracy {
        line += &format!(", accuracy {:.2}%", 100.0 * a);
    }
    line
}
