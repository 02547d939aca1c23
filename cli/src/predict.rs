//! `retroprop predict` and `evaluate`, and what `export` shares with them:
//! a model file opened as one network, or as members (a file of members,
//! `retroprop::io::members`): the ensemble, or one member (`--member`);
//! predictions written as CSV or Parquet.

use crate::cli::{EvaluateArgs, PredictArgs};
use crate::data::{load_inputs, load_labelled, stream_inputs, stream_labelled};
use crate::train::{Result, note_fallback, text};
use retroprop::data::Categories;
use retroprop::io::members::{LoadedMembers, SavedMembers, is_members, parse_members};
use retroprop::io::parquet::{Column, ColumnsWriter, write_parquet};
use retroprop::io::{AtomicFile, SavedModel, parse_model};
use retroprop::loss::argmax;
use retroprop::stream::Streamed;
use retroprop::train::{Member, Members};
use retroprop::{Device, Evaluation, Loss, TrainConfig};
use std::path::Path;

/// What a model file holds, as `--member` asks for it.
pub enum ModelFile {
    /// One network: the file's, or one member of a file of members.
    One(SavedModel),
    /// Every member of a file of members.
    Members(SavedMembers),
}

impl ModelFile {
    /// Reads `path`: one network, every member, or with `member` that one.
    pub fn open(path: &Path, member: Option<usize>) -> Result<ModelFile> {
        Ok(ModelFile::open_with_categories(path, member)?.0)
    }

    /// [`open`](Self::open), and the categories the model's inputs one-hot
    /// encode (`retroprop.categories`), if it has them.
    pub fn open_with_categories(
        path: &Path,
        member: Option<usize>,
    ) -> Result<(ModelFile, Option<Categories>)> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !is_members(&bytes, path).map_err(text)? {
            if member.is_some() {
                return Err(format!(
                    "--member: {} holds one network, not members",
                    path.display()
                ));
            }
            let mut loaded = parse_model(&bytes, path).map_err(text)?;
            let categories = loaded.categories.take();
            let model = loaded.complete(path).map_err(text)?;
            return Ok((ModelFile::One(model), categories));
        }
        let loaded = parse_members(&bytes, path).map_err(text)?;
        let categories = loaded.members.first().and_then(|m| m.categories.clone());
        ModelFile::of_members(path, loaded, member).map(|file| (file, categories))
    }

    /// Every member of a file of members, or with `member` that one.
    fn of_members(path: &Path, loaded: LoadedMembers, member: Option<usize>) -> Result<ModelFile> {
        let count = loaded.members.len();
        let mut models = loaded.members.into_iter();
        if let Some(m) = member {
            let model = models.nth(m).ok_or_else(|| {
                format!(
                    "--member {m}: {} holds {count} members (0 to {})",
                    path.display(),
                    count - 1
                )
            })?;
            return model.complete(path).map(ModelFile::One).map_err(text);
        }
        let params = models.clone().map(|m| m.params).collect();
        let first = models
            .next()
            .ok_or_else(|| format!("{}: no member", path.display()))?;
        Ok(ModelFile::Members(SavedMembers {
            model: first.complete(path).map_err(text)?,
            params,
            settings: loaded.settings,
        }))
    }
}

/// A model file ready to predict on a device: its networks as the
/// members of a run (one network: one member), and whether they predict
/// as an ensemble.
struct Predictor {
    run: Members,
    ensemble: bool,
}

/// A model's predictions for some rows: outputs (logits for the
/// classification losses) of one network, or the ensemble's mean
/// probabilities (mean outputs for the regression losses).
enum Predictions {
    Outputs(Vec<f32>),
    Ensemble(Vec<f32>),
}

/// `file` on `device`: the model and what predicts with it.
fn predictor(file: ModelFile, device: Device) -> Result<(SavedModel, Predictor)> {
    let (model, params, ensemble) = match file {
        ModelFile::One(model) => {
            let params = vec![model.params.clone()];
            (model, params, false)
        }
        ModelFile::Members(members) => (members.model, members.params, true),
    };
    let config = TrainConfig::default().loss(model.loss).device(device);
    let own = vec![Member::default(); params.len()];
    let mut run = Members::with_parameters(model.mlp.clone(), config, own, params).map_err(text)?;
    // Evaluation mode normalises by the running statistics the file holds.
    if !ensemble {
        run.member_mut(0)
            .set_buffers(&model.buffers)
            .map_err(text)?;
    }
    note_fallback(run.member(0));
    Ok((model, Predictor { run, ensemble }))
}

impl Predictor {
    fn predict(&mut self, x: &[f32]) -> Result<Predictions> {
        match self.ensemble {
            true => self.run.predict_ensemble(x).map(Predictions::Ensemble),
            false => self.run.member_mut(0).predict(x).map(Predictions::Outputs),
        }
        .map_err(text)
    }

    /// [`predict`](Self::predict) of inputs read a part at a time: each
    /// part's predictions handed to `on_part` in order.
    fn predict_streamed(
        &mut self,
        inputs: &Streamed,
        mut on_part: impl FnMut(Predictions) -> retroprop::Result<()>,
    ) -> retroprop::Result<usize> {
        match self.ensemble {
            true => self.run.predict_ensemble_streamed(inputs, |mean| {
                on_part(Predictions::Ensemble(mean.to_vec()))
            }),
            false => self.run.member_mut(0).predict_streamed(inputs, |outputs| {
                on_part(Predictions::Outputs(outputs.to_vec()))
            }),
        }
    }

    fn evaluate(&mut self, data: &retroprop::Dataset) -> Result<Evaluation> {
        match self.ensemble {
            true => self.run.evaluate_ensemble(data),
            false => self.run.member_mut(0).evaluate(data),
        }
        .map_err(text)
    }

    fn evaluate_streamed(&mut self, data: &Streamed) -> Result<Evaluation> {
        match self.ensemble {
            true => self.run.evaluate_ensemble_streamed(data),
            false => self.run.member_mut(0).evaluate_streamed(data),
        }
        .map_err(text)
    }

    /// What the line of `evaluate` adds about the model: the ensemble.
    fn described(&self) -> String {
        match self.ensemble {
            true => format!(" (the ensemble of {} members)", self.run.len()),
            false => String::new(),
        }
    }
}

pub fn predict(args: PredictArgs) -> Result<()> {
    let (file, categories) = ModelFile::open_with_categories(&args.model, args.member)?;
    let (model, mut predictor) = predictor(file, args.device)?;
    if args.stream {
        if categories.is_some() {
            return Err(format!(
                "--stream: {} one-hot encodes categorical columns, read from a CSV file, which \
                 is read whole: leave --stream out",
                args.model.display()
            ));
        }
        return predict_streamed(&args, &model, &mut predictor);
    }
    let inputs = model.mlp.inputs();
    let spec = args.columns.spec(1).with_categories(categories.as_ref());
    let mut x = load_inputs(&args.data, inputs, &spec).map_err(text)?;
    if let Some(s) = &model.standardizer {
        s.apply_rows(&mut x).map_err(text)?;
    }
    let predictions = predictor.predict(&x)?;
    let columns = prediction_columns(model.loss, model.mlp.outputs(), &predictions);
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
    // Boxed: the writer is several times the size of the others.
    Parquet(Box<ColumnsWriter<AtomicFile>>),
    Csv(AtomicFile),
    Stdout(std::io::StdoutLock<'static>),
}

/// `predict --stream`: the inputs read a part at a time, each part's
/// predictions written before the next is read; the same bytes as
/// without `--stream`.
fn predict_streamed(
    args: &PredictArgs,
    model: &SavedModel,
    predictor: &mut Predictor,
) -> Result<()> {
    use std::io::Write;
    let spec = args.columns.spec(1);
    let inputs = stream_inputs(&args.data, model.mlp.inputs(), &spec)
        .map_err(text)?
        .with_standardizer(model.standardizer.clone());
    let (loss, width) = (model.loss, model.mlp.outputs());
    let mut out: Option<Out> = None;
    let written = predictor.predict_streamed(&inputs, |predictions| {
        let columns = prediction_columns(loss, width, &predictions);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| retroprop::Error::Io { path, source }
        };
        let first = out.is_none();
        let out = match &mut out {
            Some(out) => out,
            None => out.insert(match &args.out {
                Some(path) if is_parquet(path) => Out::Parquet(Box::new(ColumnsWriter::new(
                    AtomicFile::create(path)?,
                    &columns,
                    path,
                )?)),
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

/// The predictions as named columns, whichever file they go to:
/// cross_entropy's class and probabilities (`class`, `p0`, …),
/// bce_with_logits's 0/1 labels and probabilities (`label0`, …, `p0`, …),
/// the regression's values (`y0`, …). An ensemble's class is its mean
/// probabilities' largest, a label on where its mean probability passes
/// one half.
fn prediction_columns(
    loss: Loss,
    width: usize,
    predictions: &Predictions,
) -> Vec<(String, Column)> {
    type Decided<'a> = (Vec<f32>, &'a [f32], fn(f32) -> bool);
    let (probabilities, decided, on): Decided = match predictions {
        Predictions::Outputs(outputs) => (loss.probabilities(outputs, width), outputs, |z| z > 0.0),
        Predictions::Ensemble(mean) => (mean.clone(), mean, |p| p > 0.5),
    };
    let column = |j: usize, values: &[f32]| -> Vec<f32> {
        values.chunks_exact(width).map(|row| row[j]).collect()
    };
    let p_columns = |p: &[f32]| {
        (0..width)
            .map(|j| (format!("p{j}"), Column::Float32(column(j, p))))
            .collect::<Vec<_>>()
    };
    match loss {
        Loss::CrossEntropy => {
            let classes = decided
                .chunks_exact(width)
                .map(|row| argmax(row) as i64)
                .collect();
            std::iter::once(("class".to_string(), Column::Int64(classes)))
                .chain(p_columns(&probabilities))
                .collect()
        }
        Loss::BceWithLogits => {
            let labels = |j: usize| {
                Column::Int64(
                    decided
                        .chunks_exact(width)
                        .map(|row| on(row[j]) as i64)
                        .collect(),
                )
            };
            (0..width)
                .map(|j| (format!("label{j}"), labels(j)))
                .chain(p_columns(&probabilities))
                .collect()
        }
        Loss::Mse | Loss::HalfMse => (0..width)
            .map(|j| (format!("y{j}"), Column::Float32(column(j, &probabilities))))
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

pub fn evaluate(args: EvaluateArgs) -> Result<()> {
    let (file, categories) = ModelFile::open_with_categories(&args.model, args.member)?;
    let (model, mut predictor) = predictor(file, args.device)?;
    // Without --targets, as many target columns as the model has outputs
    // (one of class labels for cross-entropy).
    let targets = args.targets.unwrap_or(if model.loss.takes_classes() {
        1
    } else {
        model.mlp.outputs()
    });
    let spec = args
        .columns
        .spec(targets)
        .with_categories(categories.as_ref());
    if args.stream {
        let data = stream_labelled(&args.data, &spec, model.loss).map_err(text)?;
        let data = data.with_standardizer(model.standardizer.clone());
        check_inputs(&args.data, data.features(), &model)?;
        let eval = predictor.evaluate_streamed(&data)?;
        let line = evaluation_line(data.rows(), model.loss, &eval);
        println!("{line}{}", predictor.described());
        return Ok(());
    }
    let mut data = load_labelled(Some(&args.data), &spec, Some(model.loss))
        .map_err(text)?
        .data;
    check_inputs(&args.data, data.features(), &model)?;
    if let Some(s) = &model.standardizer {
        s.apply(&mut data).map_err(text)?;
    }
    let eval = predictor.evaluate(&data)?;
    let line = evaluation_line(data.rows(), model.loss, &eval);
    println!("{line}{}", predictor.described());
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
fn evaluation_line(rows: usize, loss: Loss, eval: &Evaluation) -> String {
    let mut line = format!("{rows} rows: loss ({loss}) {:.6}", eval.loss);
    if let Some(a) = eval.accuracy {
        line += &format!(", accuracy {:.2}%", 100.0 * a);
    }
    line
}
