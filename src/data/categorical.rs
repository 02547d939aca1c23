//! Categorical features, one-hot encoded before the network as the `tabm`
//! package's `_OneHotEncoding` does (`cat_cardinalities`): a row's inputs
//! are its numeric features, in file order, then each categorical
//! feature's block of as many slots as it has categories, in column
//! order, the slot of the row's category 1 and the others 0 — torch's
//! `column_stack([x_num, one_hot(x_cat)])`. The encoding has no
//! parameters; its categories travel with the model (`retroprop.categories`
//! in a model file's metadata, [`Categories::to_json`]).

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

/// One categorical column of a table: where it stands among the table's
/// feature columns, its name, and its categories in the order of their
/// one-hot slots.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoricalColumn {
    /// Its position among the feature columns, 0-based.
    pub column: usize,
    /// Its name in the header, when the table had one.
    pub name: Option<String>,
    /// Its categories, one slot each, in order (read from a CSV file: the
    /// distinct values of the training rows, sorted by their bytes).
    pub categories: Vec<String>,
}

impl CategoricalColumn {
    /// How the column is named in messages: `column 3 (`color`)`, 1-based.
    pub fn described(&self) -> String {
        match &self.name {
            Some(name) => format!("column {} (`{name}`)", self.column + 1),
            None => format!("column {}", self.column + 1),
        }
    }
}

/// The categorical columns of a table of `features` feature columns,
/// which a model trained on it one-hot encodes.
///
/// ```
/// use retroprop::data::{Categories, CategoricalColumn};
/// let color = CategoricalColumn {
///     column: 1,
///     name: Some("color".into()),
///     categories: vec!["blue".into(), "red".into()],
/// };
/// let categories = Categories::new(3, vec![color])?;
/// assert_eq!(categories.cardinalities(), [2]);
/// assert_eq!(categories.inputs(), 4); // two numbers, then two slots
/// // Rows of numeric features and of category slots become network inputs.
/// let x = categories.one_hot(2, &[0.5, 7.0, 1.5, 8.0], &[1, 0]);
/// assert_eq!(x, [0.5, 7.0, 0.0, 1.0, 1.5, 8.0, 1.0, 0.0]);
/// let text = categories.to_json();
/// assert_eq!(Categories::from_json(&text).unwrap(), categories);
/// # Ok::<(), retroprop::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Categories {
    features: usize,
    columns: Vec<CategoricalColumn>,
}

impl Categories {
    /// Checks that the columns stand in increasing order among the
    /// `features` columns, each with at least one category and none twice.
    pub fn new(features: usize, columns: Vec<CategoricalColumn>) -> Result<Categories> {
        let config = |message: String| Error::Config(format!("categories: {message}"));
        if features == 0 {
            return Err(config("a table of no feature columns".into()));
        }
        for (i, c) in columns.iter().enumerate() {
            if c.column >= features || (i > 0 && c.column <= columns[i - 1].column) {
                return Err(config(format!(
                    "{} is not a feature column after the one before it (of {features})",
                    c.described()
                )));
            }
            if c.categories.is_empty() {
                return Err(config(format!("{} has no categories", c.described())));
            }
            let mut sorted: Vec<&String> = c.categories.iter().collect();
            sorted.sort();
            if let Some(twice) = sorted.windows(2).find(|w| w[0] == w[1]) {
                return Err(config(format!(
                    "{} lists `{}` twice",
                    c.described(),
                    twice[0]
                )));
            }
        }
        Ok(Categories { features, columns })
    }

    /// The table's feature columns, numeric and categorical.
    pub fn features(&self) -> usize {
        self.features
    }

    /// The categorical columns, in column order.
    pub fn columns(&self) -> &[CategoricalColumn] {
        &self.columns
    }

    /// The numeric feature columns, which come first in the inputs.
    pub fn numeric(&self) -> usize {
        self.features - self.columns.len()
    }

    /// Each categorical column's number of categories (`tabm`'s
    /// `cat_cardinalities`).
    pub fn cardinalities(&self) -> Vec<usize> {
        self.columns.iter().map(|c| c.categories.len()).collect()
    }

    /// The network's inputs: the numeric features and every one-hot slot.
    pub fn inputs(&self) -> usize {
        self.numeric() + self.cardinalities().iter().sum::<usize>()
    }

    /// The categorical column at feature position `column`, if it is one.
    pub fn column(&self, column: usize) -> Option<&CategoricalColumn> {
        self.columns.iter().find(|c| c.column == column)
    }

    /// Network inputs of `rows` rows given as their numeric features
    /// (`numeric`, row-major, [`numeric`](Self::numeric) to a row) and their
    /// category slots (`codes`, row-major, one per categorical column, each
    /// below its column's cardinality).
    pub fn one_hot(&self, rows: usize, numeric: &[f32], codes: &[u32]) -> Vec<f32> {
        let (width, cards, n) = (self.inputs(), self.cardinalities(), self.numeric());
        let mut x = vec![0.0; rows * width];
        for (r, row) in x.chunks_exact_mut(width).enumerate() {
            row[..n].copy_from_slice(&numeric[r * n..(r + 1) * n]);
            let mut start = n;
            for (k, &card) in cards.iter().enumerate() {
                row[start + codes[r * cards.len() + k] as usize] = 1.0;
                start += card;
            }
        }
        x
    }

    /// The text a model file keeps them as (`retroprop.categories`):
    /// `{"features":3,"columns":[{"column":2,"name":"color",
    /// "categories":["blue","red"]}]}`, columns 1-based as the program's
    /// `--categorical` names them, a name `null` when there was no header.
    pub fn to_json(&self) -> String {
        let columns: Vec<serde_json::Value> = self
            .columns
            .iter()
            .map(|c| {
                serde_json::json!({
                    "column": c.column + 1,
                    "name": c.name,
                    "categories": c.categories,
                })
            })
            .collect();
        serde_json::json!({ "features": self.features, "columns": columns }).to_string()
    }

    /// Reads [`to_json`](Self::to_json)'s text; the error says what is
    /// missing or wrong.
    pub fn from_json(text: &str) -> std::result::Result<Categories, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let count = |v: &serde_json::Value, key: &str| {
            v.get(key)
                .and_then(serde_json::Value::as_u64)
                .map(|n| n as usize)
                .ok_or_else(|| format!("`{key}` is not a count"))
        };
        let features = count(&value, "features")?;
        let listed = value
            .get("columns")
            .and_then(serde_json::Value::as_array)
            .ok_or("`columns` is not a list")?;
        let mut columns = Vec::with_capacity(listed.len());
        for c in listed {
            let column = count(c, "column")?
                .checked_sub(1)
                .ok_or("`column` counts from 1")?;
            let name = match c.get("name") {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(_) => return Err("`name` is not text".into()),
            };
            let categories = c
                .get("categories")
                .and_then(serde_json::Value::as_array)
                .and_then(|list| {
                    list.iter()
                        .map(|v| v.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or("`categories` is not a list of text")?;
            columns.push(CategoricalColumn {
                column,
                name,
                categories,
            });
        }
        Categories::new(features, columns).map_err(|e| e.to_string())
    }
}

/// A categorical column's categories by slot, to encode values a row at a
/// time: an unseen value is an error naming the file, row, column and value.
pub(crate) struct Slots<'a> {
    column: &'a CategoricalColumn,
    slot: HashMap<&'a str, u32>,
}

impl<'a> Slots<'a> {
    pub(crate) fn new(column: &'a CategoricalColumn) -> Slots<'a> {
        let slot = column
            .categories
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i as u32))
            .collect();
        Slots { column, slot }
    }

    pub(crate) fn column(&self) -> &'a CategoricalColumn {
        self.column
    }

    /// The slot of `value` on row `line` (1-based) of the file `path`.
    pub(crate) fn of(&self, value: &str, line: usize, path: &Path) -> Result<u32> {
        if let Some(&slot) = self.slot.get(value) {
            return Ok(slot);
        }
        let known = &self.column.categories;
        let mut listed = known
            .iter()
            .take(10)
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ");
        if known.len() > 10 {
            listed += &format!(" and {} more", known.len() - 10);
        }
        Err(Error::Parse {
            path: path.to_path_buf(),
            message: format!(
                "row {line}, {}: category `{value}` was not seen in training (its categories: {listed})",
                self.column.described()
            ),
        })
    }
}
