//! Loading data files for the program: CSV or safetensors, with the loss
//! deciding whether targets are class labels.

use retroprop::{Dataset, Loss, Targets};
use std::path::Path;

/// The bundled digits data set (UCI optical digits, CC BY 4.0; see data/README.md).
const DIGITS: &[u8] = include_bytes!("../../data/digits.csv");

fn is_safetensors(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
}

fn read(path: Option<&Path>, targets: usize, classes: bool) -> retroprop::Result<Dataset> {
    match path {
        None => Dataset::from_csv_reader(DIGITS, Path::new("<bundled digits.csv>"), 1, classes),
        Some(p) if is_safetensors(p) => Dataset::from_safetensors(p, classes),
        Some(p) => Dataset::from_csv(p, targets, classes),
    }
}

/// A labelled data file and its loss: the one named, or with none the one
/// its targets suggest (`Dataset::suggested_loss`), with why in words.
pub struct Labelled {
    pub data: Dataset,
    pub loss: Loss,
    /// Why the loss was chosen, when it was not named.
    pub chosen_because: Option<String>,
}

/// Loads a labelled data file; with no `loss`, takes the one its targets
/// suggest: cross_entropy for class labels, mse otherwise.
pub fn load_labelled(
    path: Option<&Path>,
    targets: usize,
    loss: Option<Loss>,
) -> retroprop::Result<Labelled> {
    let (loss, chosen_because) = match loss {
        Some(loss) => (loss, None),
        None if path.is_none() => (Loss::CrossEntropy, None),
        None => {
            let values = read(path, targets, false)?;
            let choice = values.suggested_loss();
            if !choice.loss.takes_classes() {
                return Ok(Labelled {
                    data: values,
                    loss: choice.loss,
                    chosen_because: Some(choice.reason),
                });
            }
            (choice.loss, Some(choice.reason))
        }
    };
    let data = read(path, targets, loss.takes_classes())?;
    let name = path.map_or("<bundled digits.csv>".into(), |p| p.display().to_string());
    loss.check_targets(&data, &name)?;
    Ok(Labelled {
        data,
        loss,
        chosen_because,
    })
}

/// Number of outputs the targets need: classes for cross-entropy.
pub fn outputs_for(data: &Dataset) -> usize {
    match data.targets() {
        Targets::Classes(labels) => labels.iter().max().map_or(1, |&m| m as usize + 1).max(2),
        Targets::Values { width, .. } => *width,
    }
}

/// Inputs of a file to predict on: all CSV columns, or tensor x.
pub fn load_inputs(path: &Path, inputs: usize) -> retroprop::Result<Vec<f32>> {
    if is_safetensors(path) {
        return Ok(Dataset::from_safetensors(path, false)?.x().to_vec());
    }
    // Read every column as a feature, then drop trailing target columns.
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
    let data = Dataset::from_csv_reader(padded.as_bytes(), path, 1, false)?;
    let columns = data.features();
    if columns < inputs {
        return Err(retroprop::Error::Parse {
            path: path.to_path_buf(),
            message: format!("rows have {columns} columns, but the model takes {inputs} inputs"),
        });
    }
    Ok(data
        .x()
        .chunks_exact(columns)
        .flat_map(|row| row[..inputs].iter().copied())
        .collect())
}
