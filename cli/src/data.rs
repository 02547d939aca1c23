//! Loading data files for the program: CSV, Parquet, NumPy's .npz and
//! .npy, or safetensors, by the file's extension, with the loss deciding
//! whether targets are class labels.

use retroprop::data::{Categories, CsvCategorical, CsvOptions, CsvTable};
use retroprop::io::npy::NpySource;
use retroprop::io::parquet::{ParquetColumns, ParquetSource, TargetColumns};
use retroprop::stream::Streamed;
use retroprop::{Dataset, Loss, Targets};
use std::path::Path;

/// The bundled digits data set (UCI optical digits, CC BY 4.0; see data/README.md).
const DIGITS: &[u8] = include_bytes!("../../data/digits.csv");

/// A data file's format, from its extension; anything else is CSV.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Csv,
    Parquet,
    Npz,
    Npy,
    Safetensors,
}

impl Format {
    fn of(path: &Path) -> Format {
        let extension = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match extension.as_deref() {
            Some("parquet" | "pq") => Format::Parquet,
            Some("npz") => Format::Npz,
            Some("npy") => Format::Npy,
            Some("safetensors") => Format::Safetensors,
            _ => Format::Csv,
        }
    }
}

/// How to read a data file: how many of a CSV file's (or an .npy array's)
/// last columns are targets, and which Parquet columns are which.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSpec {
    /// The last N columns of a CSV file or .npy array are targets.
    pub targets: usize,
    /// Parquet's columns by name (`--features`, `--target`, `--exclude`,
    /// `--fill-null`); without names, the last `targets` columns.
    pub columns: ParquetColumns,
    /// A CSV file's categorical columns: found and named (`train`,
    /// `--categorical`), or a model's (`predict`, `evaluate`).
    pub categorical: CsvCategorical,
}

impl DataSpec {
    /// The last `targets` columns are targets, every other a feature.
    pub fn last(targets: usize) -> DataSpec {
        DataSpec {
            targets,
            columns: ParquetColumns {
                targets: TargetColumns::Last(targets),
                ..ParquetColumns::default()
            },
            categorical: CsvCategorical::None,
        }
    }

    /// These columns read with a model's `categories`, if it has them.
    pub fn with_categories(mut self, categories: Option<&Categories>) -> DataSpec {
        if let Some(c) = categories {
            self.categorical = CsvCategorical::Known(c.clone());
        }
        self
    }

    /// Refuses categorical columns for a format other than CSV: a model's
    /// categories (`Known`) or `--categorical`.
    fn check_categorical(&self, path: &Path, format: Format) -> retroprop::Result<()> {
        let message = match &self.categorical {
            _ if format == Format::Csv => return Ok(()),
            CsvCategorical::Detect(named) if !named.is_empty() => {
                "--categorical names columns of a CSV file; this file is not one (encode its \
                 categorical columns as numbers first, one-hot, or write it as CSV)"
            }
            CsvCategorical::Known(_) => {
                "the model one-hot encodes categorical columns, which it reads from CSV files: \
                 give the rows as CSV"
            }
            _ => return Ok(()),
        };
        Err(retroprop::Error::Parse {
            path: path.to_path_buf(),
            message: message.into(),
        })
    }

    /// Refuses the Parquet flags for other formats, which have no column
    /// names and no nulls.
    fn check_format(&self, path: &Path, format: Format) -> retroprop::Result<()> {
        let c = &self.columns;
        let flags = [
            ("--features", c.features.is_some()),
            ("--target", matches!(c.targets, TargetColumns::Named(_))),
            ("--exclude", !c.exclude.is_empty()),
            ("--fill-null", c.fill_null.is_some()),
        ];
        match flags.iter().find(|(_, given)| *given) {
            Some((flag, _)) if format != Format::Parquet => Err(retroprop::Error::Parse {
                path: path.to_path_buf(),
                message: format!(
                    "{flag} chooses columns of a Parquet file by name; this file is read as {} ({})",
                    match format {
                        Format::Csv => "CSV",
                        Format::Npz => "an .npz archive",
                        Format::Npy => "an .npy array",
                        _ => "safetensors",
                    },
                    match format {
                        Format::Csv | Format::Npy => "its last --targets N columns are the targets",
                        _ => "x holds the features, y the targets",
                    }
                ),
            }),
            _ => Ok(()),
        }
    }
}

fn read(path: Option<&Path>, spec: &DataSpec, classes: bool) -> retroprop::Result<CsvTable> {
    let numbers = |data| {
        Ok(CsvTable {
            data,
            categories: None,
        })
    };
    let Some(path) = path else {
        let digits = Path::new("<bundled digits.csv>");
        spec.check_format(digits, Format::Csv)?;
        return numbers(Dataset::from_csv_reader(DIGITS, digits, 1, classes)?);
    };
    let format = Format::of(path);
    spec.check_format(path, format)?;
    spec.check_categorical(path, format)?;
    match format {
        Format::Csv => {
            let options = CsvOptions {
                targets: spec.targets,
                classes,
                categorical: spec.categorical.clone(),
            };
            CsvTable::open(path, &options)
        }
        Format::Parquet => numbers(Dataset::from_parquet(path, &spec.columns, classes)?),
        Format::Npz => numbers(Dataset::from_npz(path, classes)?),
        Format::Npy => numbers(Dataset::from_npy(path, spec.targets, classes)?),
        Format::Safetensors => numbers(Dataset::from_safetensors(path, classes)?),
    }
}

/// A labelled data file and its loss: the one named, or with none the one
/// its targets suggest (`Dataset::suggested_loss`), with why in words.
pub struct Labelled {
    pub data: Dataset,
    pub loss: Loss,
    /// Why the loss was chosen, when it was not named.
    pub chosen_because: Option<String>,
    /// The categorical columns one-hot encoded, when a CSV file has them.
    pub categories: Option<Categories>,
}

/// Loads a labelled data file; with no `loss`, takes the one its targets
/// suggest: cross_entropy for class labels, mse otherwise.
pub fn load_labelled(
    path: Option<&Path>,
    spec: &DataSpec,
    loss: Option<Loss>,
) -> retroprop::Result<Labelled> {
    let (loss, chosen_because) = match loss {
        Some(loss) => (loss, None),
        None if path.is_none() => (Loss::CrossEntropy, None),
        None => {
            let values = read(path, spec, false)?;
            let choice = values.data.suggested_loss();
            if !choice.loss.takes_classes() {
                return Ok(Labelled {
                    data: values.data,
                    loss: choice.loss,
                    chosen_because: Some(choice.reason),
                    categories: values.categories,
                });
            }
            (choice.loss, Some(choice.reason))
        }
    };
    let CsvTable { data, categories } = read(path, spec, loss.takes_classes())?;
    let name = path.map_or("<bundled digits.csv>".into(), |p| p.display().to_string());
    loss.check_targets(&data, &name)?;
    Ok(Labelled {
        data,
        loss,
        chosen_because,
        categories,
    })
}

/// Number of outputs the targets need: classes for cross-entropy.
pub fn outputs_for(data: &Dataset) -> usize {
    match data.targets() {
        Targets::Classes(labels) => labels.iter().max().map_or(1, |&m| m as usize + 1).max(2),
        Targets::Values { width, .. } => *width,
    }
}

/// Inputs of a file to predict on, row-major, `inputs` to a row: a CSV
/// file's or .npy array's first `inputs` columns (target columns after
/// them are left out; a model with categories: its feature columns, one-hot
/// encoded), a Parquet file's feature columns (`spec`), tensor or array x
/// of a safetensors or .npz file.
pub fn load_inputs(path: &Path, inputs: usize, spec: &DataSpec) -> retroprop::Result<Vec<f32>> {
    let format = Format::of(path);
    spec.check_format(path, format)?;
    spec.check_categorical(path, format)?;
    let (x, columns) = match format {
        Format::Safetensors => return Ok(Dataset::from_safetensors(path, false)?.x().to_vec()),
        Format::Parquet => return retroprop::io::parquet::read_inputs(path, &spec.columns, inputs),
        Format::Npz | Format::Npy => retroprop::io::npy::read_inputs(path)?,
        Format::Csv => csv_inputs(path, &spec.categorical)?,
    };
    if columns < inputs {
        return Err(retroprop::Error::Parse {
            path: path.to_path_buf(),
            message: format!("rows have {columns} columns, but the model takes {inputs} inputs"),
        });
    }
    Ok(x.chunks_exact(columns)
        .flat_map(|row| row[..inputs].iter().copied())
        .collect())
}

/// Every column of a CSV file, row-major, and the number of columns (with
/// a model's categories: its feature columns, encoded, and its inputs).
fn csv_inputs(path: &Path, categorical: &CsvCategorical) -> retroprop::Result<(Vec<f32>, usize)> {
    let file = std::fs::File::open(path).map_err(|source| retroprop::Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::BufReader::new(file), &mut text).map_err(
        |source| retroprop::Error::Io {
            path: path.to_path_buf(),
            source,
        },
    )?;
    // A dummy zero target column lets the CSV reader validate every field.
    let padded: String = text
        .lines()
        .map(|l| {
            if l.trim().is_empty() {
                "\n".to_string()
            } else {
                format!("{l},0\n")
            }
        })
        .collect();
    let options = CsvOptions {
        targets: 1,
        classes: false,
        categorical: categorical.clone(),
    };
    let data = CsvTable::read(padded.as_bytes(), path, &options)?.data;
    Ok((data.x().to_vec(), data.features()))
}

/// A labelled data file read a part at a time (`--stream`), and its loss:
/// the one named, or the one its targets suggest, found by a pass over
/// the target columns (which also finds the classes and checks the
/// targets against the loss, as reading the file whole would).
pub struct StreamedFile {
    pub data: Streamed,
    pub loss: Loss,
    /// Why the loss was chosen, when it was not named.
    pub chosen_because: Option<String>,
    /// The network's outputs the targets need: the classes for
    /// cross-entropy, else the target columns.
    pub outputs: usize,
}

/// The streamed source of a Parquet or .npy file; any other format is
/// read whole, and refused here, naming the format.
fn source(path: &Path, spec: &DataSpec, classes: bool) -> retroprop::Result<Streamed> {
    let format = Format::of(path);
    spec.check_format(path, format)?;
    spec.check_categorical(path, format)?;
    match format {
        Format::Parquet => Ok(Streamed::new(ParquetSource::open(
            path,
            &spec.columns,
            classes,
        )?)),
        Format::Npy => Ok(Streamed::new(NpySource::open(path, spec.targets, classes)?)),
        other => Err(not_streamed(path, other)),
    }
}

/// Why a file of `format` is not streamed.
fn not_streamed(path: &Path, format: Format) -> retroprop::Error {
    let name = match format {
        Format::Csv => "CSV (its rows are found by reading the text)",
        Format::Npz => "an .npz archive (its arrays are zip entries, most compressed)",
        _ => "safetensors",
    };
    retroprop::Error::Parse {
        path: path.to_path_buf(),
        message: format!(
            "--stream reads Parquet (.parquet) and NumPy arrays (.npy) a part at a time; this file \
             is {name}, read whole: leave --stream out, or write it as Parquet or .npy"
        ),
    }
}

/// Opens a labelled file to stream (`train --stream`); with no `loss`,
/// takes the one its targets suggest.
pub fn open_streamed(
    path: Option<&Path>,
    spec: &DataSpec,
    loss: Option<Loss>,
) -> retroprop::Result<StreamedFile> {
    let Some(path) = path else {
        return Err(retroprop::Error::Config(
            "--stream reads a Parquet or .npy file given with --data (the bundled digits are \
             held in memory)"
                .into(),
        ));
    };
    let (loss, chosen_because) = match loss {
        Some(loss) => (loss, None),
        None => {
            let choice = source(path, spec, false)?
                .target_summary()?
                .suggested_loss();
            (choice.loss, Some(choice.reason))
        }
    };
    let data = source(path, spec, loss.takes_classes())?;
    let summary = data.target_summary()?;
    summary.check_targets(loss, &path.display().to_string())?;
    let outputs = match loss.takes_classes() {
        true => summary.classes(),
        false => data.target_width(),
    };
    Ok(StreamedFile {
        data,
        loss,
        chosen_because,
        outputs,
    })
}

/// Labelled rows to validate on beside a streamed training file: streamed
/// too when the format streams, else read whole (a CSV file) and handed
/// out a part at a time the same way.
pub fn open_validation(path: &Path, spec: &DataSpec, loss: Loss) -> retroprop::Result<Streamed> {
    match Format::of(path) {
        Format::Parquet | Format::Npy => stream_labelled(path, spec, loss),
        _ => Ok(Streamed::new(
            load_labelled(Some(path), spec, Some(loss))?.data,
        )),
    }
}

/// A labelled Parquet or .npy file to stream with `loss`, its targets
/// checked against it (`evaluate --stream`).
pub fn stream_labelled(path: &Path, spec: &DataSpec, loss: Loss) -> retroprop::Result<Streamed> {
    let data = source(path, spec, loss.takes_classes())?;
    data.target_summary()?
        .check_targets(loss, &path.display().to_string())?;
    Ok(data)
}

/// The inputs of a file to predict on, streamed (`predict --stream`):
/// the columns [`load_inputs`] reads, of a Parquet or .npy file.
pub fn stream_inputs(path: &Path, inputs: usize, spec: &DataSpec) -> retroprop::Result<Streamed> {
    let format = Format::of(path);
    spec.check_format(path, format)?;
    spec.check_categorical(path, format)?;
    match format {
        Format::Parquet => Ok(Streamed::new(ParquetSource::inputs(
            path,
            &spec.columns,
            inputs,
        )?)),
        Format::Npy => Ok(Streamed::new(NpySource::inputs(path, inputs)?)),
        other => Err(not_streamed(path, other)),
    }
}
