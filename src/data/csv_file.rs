//! Reading CSV files: numeric features and targets, and categorical
//! features ([`CsvCategorical`]) one-hot encoded as
//! [`Categories`](super::Categories) says.

use super::categorical::{CategoricalColumn, Categories, Slots};
use super::{Dataset, Targets};
use crate::error::{Error, Result};
use std::path::Path;

/// Which feature columns of a CSV file are categorical.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum CsvCategorical {
    /// None: a cell of a feature column that is not a number is an error.
    #[default]
    None,
    /// Training's reading: a feature column none of whose cells is a
    /// number, and the columns named here (by header name, or by 1-based
    /// index), are categorical, their categories the distinct values seen,
    /// sorted by their bytes. A cell that is not a number in a column
    /// with numbers stays an error.
    Detect(Vec<String>),
    /// A model's reading: its first [`Categories::features`] columns are
    /// the features, those it lists categorical (a value it does not list
    /// is an error naming the row, column and value), the last `targets`
    /// the targets; columns between them are left out.
    Known(Categories),
}

/// How to read a CSV file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CsvOptions {
    /// The last N columns are targets (at least one).
    pub targets: usize,
    /// The single target column holds class indices 0, 1, 2, …
    pub classes: bool,
    /// Which feature columns are categorical.
    pub categorical: CsvCategorical,
}

/// A CSV file read: its rows, categorical features one-hot encoded (the
/// numeric features first, then each categorical one's slots in column
/// order), and the categories that encoding used.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvTable {
    pub data: Dataset,
    /// `None` when every feature column is numeric.
    pub categories: Option<Categories>,
}

impl CsvTable {
    /// Reads the CSV file at `path` (see [`read`](Self::read)).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: &Path, options: &CsvOptions) -> Result<CsvTable> {
        let file = std::fs::File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        CsvTable::read(std::io::BufReader::new(file), path, options)
    }

    /// Reads a CSV file from `reader`; `path` names it in errors, which
    /// name the row (1-based, as an editor shows it) and column. A first
    /// row with a cell that is not a number is a header, unless every such
    /// cell stands in a categorical column (where it is a category; with a
    /// model's categories, unless it is the column's name).
    ///
    /// ```
    /// use retroprop::data::{CsvCategorical, CsvOptions, CsvTable};
    /// let text = "size,color,y\n1.5,red,0\n2.5,blue,1\n0.5,red,1\n";
    /// let options = CsvOptions { targets: 1, classes: true, categorical: CsvCategorical::Detect(vec![]) };
    /// let table = CsvTable::read(text.as_bytes(), "t.csv".as_ref(), &options)?;
    /// let categories = table.categories.unwrap();
    /// assert_eq!(categories.columns()[0].categories, ["blue", "red"]);
    /// assert_eq!(table.data.x(), [1.5, 0., 1., 2.5, 1., 0., 0.5, 0., 1.]);
    /// // Rows to predict on are encoded with the training's categories.
    /// let known = CsvOptions { categorical: CsvCategorical::Known(categories), ..options };
    /// let err = CsvTable::read("3.0,green,0\n".as_bytes(), "p.csv".as_ref(), &known).unwrap_err();
    /// assert!(err.to_string().contains("row 1, column 2 (`color`): category `green` was not seen"));
    /// # Ok::<(), retroprop::Error>(())
    /// ```
    pub fn read(reader: impl std::io::Read, path: &Path, options: &CsvOptions) -> Result<CsvTable> {
        let parse_err = |message: String| Error::Parse {
            path: path.to_path_buf(),
            message,
        };
        let targets = options.targets;
        if targets == 0 {
            return Err(parse_err("needs at least one target column".into()));
        }
        if options.classes && targets != 1 {
            return Err(parse_err(format!(
                "class labels come from one column, but {targets} target columns were asked for"
            )));
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(reader);
        let mut rows = Rows::new(path, options);
        for (index, record) in reader.records().enumerate() {
            let line = index + 1;
            let record = record.map_err(|e| parse_err(format!("row {line}: {e}")))?;
            if record.iter().all(|f| f.is_empty()) {
                continue;
            }
            if index == 0 && record.iter().any(|f| f.parse::<f64>().is_err()) {
                match &options.categorical {
                    CsvCategorical::None => rows.header = Some(fields(&record)),
                    CsvCategorical::Known(categories) if !is_data(&record, categories, targets) => {
                        rows.header = Some(fields(&record))
                    }
                    CsvCategorical::Known(_) => rows.add(&record, line)?,
                    // Decided at the end, when each column's cells are known.
                    CsvCategorical::Detect(_) => rows.candidate = Some(fields(&record)),
                }
                continue;
            }
            rows.add(&record, line)?;
        }
        rows.finish()
    }
}

/// A record's cells as text.
fn fields(record: &csv::StringRecord) -> Vec<String> {
    record.iter().map(str::to_string).collect()
}

/// Whether a first row with text is a row of data for a model with
/// `categories`: none of its text cells stands outside the categorical
/// columns, or is the name the model has for its column (a header's).
fn is_data(record: &csv::StringRecord, categories: &Categories, targets: usize) -> bool {
    let features = categories.features();
    record.len() >= features + targets
        && record.iter().enumerate().all(|(c, field)| {
            if field.parse::<f64>().is_ok() {
                return true;
            }
            c < features
                && categories
                    .column(c)
                    .is_some_and(|column| column.name.as_deref() != Some(field))
        })
}

/// How a feature column's cells are read.
enum Cells<'a> {
    /// Numbers: a cell that is not one is an error at once.
    Numeric,
    /// Numbers, or categories if none of its cells is a number: its text
    /// cells with their rows (once a number is seen, only the first).
    Undecided {
        text: Vec<(usize, String)>,
        numbers: bool,
    },
    /// Categories, named so: every cell with its row.
    Text(Vec<(usize, String)>),
    /// A model's categories: each cell's slot.
    Coded { slots: Slots<'a>, codes: Vec<u32> },
    /// Left out: between a model's features and the targets.
    Skipped,
}

/// The rows read so far: the feature columns row-major (0 where a column
/// is not read as numbers), the targets, and each column's cells.
struct Rows<'a> {
    path: &'a Path,
    options: &'a CsvOptions,
    header: Option<Vec<String>>,
    /// A first row with text, header or data (`Detect`'s reading).
    candidate: Option<Vec<String>>,
    /// Columns of a row, once the first is read.
    width: Option<usize>,
    /// Feature columns (including those skipped).
    features: usize,
    cells: Vec<Cells<'a>>,
    x: Vec<f32>,
    y: Vec<f32>,
    rows: usize,
    /// Columns named categorical by their header name.
    named: bool,
}

impl<'a> Rows<'a> {
    fn new(path: &'a Path, options: &'a CsvOptions) -> Rows<'a> {
        Rows {
            path,
            options,
            header: None,
            candidate: None,
            width: None,
            features: 0,
            cells: Vec::new(),
            x: Vec::new(),
            y: Vec::new(),
            rows: 0,
            named: false,
        }
    }

    fn error(&self, message: String) -> Error {
        Error::Parse {
            path: self.path.to_path_buf(),
            message,
        }
    }

    /// The first data row's width fixes the columns and how each is read.
    fn start(&mut self, columns: usize, line: usize) -> Result<()> {
        let targets = self.options.targets;
        if columns <= targets {
            return Err(self.error(format!(
                "row {line} has {columns} columns, but {targets} are targets: no feature columns are left"
            )));
        }
        self.width = Some(columns);
        self.features = columns - targets;
        self.cells = match &self.options.categorical {
            CsvCategorical::None => (0..self.features).map(|_| Cells::Numeric).collect(),
            CsvCategorical::Detect(named) => self.detected(named, columns)?,
            CsvCategorical::Known(categories) => {
                let features = categories.features();
                if columns < features + targets {
                    return Err(self.error(format!(
                        "row {line} has {columns} columns, but the model reads {features} feature columns and {targets} target column(s) after them"
                    )));
                }
                (0..self.features)
                    .map(|c| match categories.column(c) {
                        Some(column) => Cells::Coded {
                            slots: Slots::new(column),
                            codes: Vec::new(),
                        },
                        None if c < features => Cells::Numeric,
                        None => Cells::Skipped,
                    })
                    .collect()
            }
        };
        Ok(())
    }

    /// `Detect`'s columns: those `named` (header names or 1-based
    /// indices) read as text, every other undecided.
    fn detected(&mut self, named: &[String], columns: usize) -> Result<Vec<Cells<'a>>> {
        let mut cells: Vec<Cells> = (0..self.features)
            .map(|_| Cells::Undecided {
                text: Vec::new(),
                numbers: false,
            })
            .collect();
        let header = self.candidate.clone().unwrap_or_default();
        for name in named {
            let by_name = header.iter().position(|h| h == name);
            self.named |= by_name.is_some();
            let column = match (by_name, name.parse::<usize>()) {
                (Some(c), _) => c,
                (None, Ok(index)) if (1..=columns).contains(&index) => index - 1,
                (None, Ok(_)) => {
                    return Err(self.error(format!(
                        "categorical column {name}: rows have {columns} columns (counted from 1)"
                    )));
                }
                (None, Err(_)) if header.is_empty() => {
                    return Err(self.error(format!(
                        "categorical column `{name}`: the file has no header row; name the column by its 1-based index"
                    )));
                }
                (None, Err(_)) => {
                    return Err(self.error(format!(
                        "categorical column `{name}` is not a column of the header ({})",
                        header.join(", ")
                    )));
                }
            };
            if column >= self.features {
                return Err(self.error(format!(
                    "categorical column {name} is column {} of {columns}, a target; categorical columns are features",
                    column + 1
                )));
            }
            cells[column] = Cells::Text(Vec::new());
        }
        Ok(cells)
    }

    /// Reads one data row, at `line` of the file.
    fn add(&mut self, record: &csv::StringRecord, line: usize) -> Result<()> {
        let columns = record.len();
        match self.width {
            None => self.start(columns, line)?,
            Some(w) if w != columns => {
                return Err(self.error(format!(
                    "row {line} has {columns} columns, expected {w} like the rows before it"
                )));
            }
            _ => {}
        }
        for (c, field) in record.iter().enumerate() {
            if c >= self.features {
                let value = number(field, line, c).map_err(|m| self.error(m))?;
                self.y.push(self.target(value, field, line, c)?);
                continue;
            }
            let value = match &mut self.cells[c] {
                Cells::Numeric => number(field, line, c).map_err(|m| self.error(m))? as f32,
                Cells::Undecided { text, numbers } => match field.parse::<f64>() {
                    Ok(_) => {
                        *numbers = true;
                        text.truncate(1);
                        number(field, line, c).map_err(|m| self.error(m))? as f32
                    }
                    Err(_) => {
                        if !*numbers || text.is_empty() {
                            text.push((line, field.to_string()));
                        }
                        0.0
                    }
                },
                Cells::Text(text) => {
                    text.push((line, field.to_string()));
                    0.0
                }
                Cells::Coded { slots, codes } => {
                    if field.is_empty() {
                        return Err(empty_cell(self.path, line, slots.column()));
                    }
                    codes.push(slots.of(field, line, self.path)?);
                    0.0
                }
                Cells::Skipped => 0.0,
            };
            self.x.push(value);
        }
        self.rows += 1;
        Ok(())
    }

    /// A target cell's value, a class label checked as one.
    fn target(&self, value: f64, field: &str, line: usize, c: usize) -> Result<f32> {
        if self.options.classes && (value < 0.0 || value.fract() != 0.0 || value > u32::MAX as f64)
        {
            return Err(self.error(format!(
                "row {line}, column {}: class label `{field}` is not a non-negative integer",
                c + 1
            )));
        }
        Ok(value as f32)
    }

    /// `Detect`'s first row with text: a header when a text cell of it
    /// stands in a column of numbers (or a target), or names a column
    /// named categorical; else the first row of data.
    fn place_candidate(&mut self) -> Result<()> {
        let Some(candidate) = self.candidate.take() else {
            return Ok(());
        };
        let is_header = self.rows == 0
            || self.named
            || Some(candidate.len()) != self.width
            || candidate.iter().enumerate().any(|(c, field)| {
                field.parse::<f64>().is_err()
                    && match self.cells.get(c) {
                        None => true,
                        Some(Cells::Undecided { numbers, .. }) => *numbers,
                        Some(_) => false,
                    }
            });
        if is_header {
            self.header = Some(candidate);
            return Ok(());
        }
        let record = csv::StringRecord::from(candidate);
        self.add(&record, 1)?;
        // Row 1 was read last: move it first.
        let features = self.features;
        self.x.rotate_right(features);
        self.y.rotate_right(self.options.targets);
        for cells in &mut self.cells {
            if let Cells::Undecided { text, .. } | Cells::Text(text) = cells
                && text.last().is_some_and(|(line, _)| *line == 1)
            {
                text.rotate_right(1);
            }
        }
        Ok(())
    }

    /// The rows as a table: the text in a column of numbers an error, the
    /// categories found (`Detect`) or given (`Known`), the inputs encoded.
    fn finish(mut self) -> Result<CsvTable> {
        self.place_candidate()?;
        let Some(_) = self.width else {
            return Err(self.error("no data rows".into()));
        };
        self.check_no_stray_text()?;
        let (categories, codes) = self.categories()?;
        let targets = match self.options.classes {
            true => Targets::Classes(self.y.iter().map(|&v| v as u32).collect()),
            false => Targets::Values {
                values: self.y,
                width: self.options.targets,
            },
        };
        let Some(categories) = categories else {
            return Ok(CsvTable {
                data: Dataset::new(self.x, self.features, targets)?,
                categories: None,
            });
        };
        let numeric_columns: Vec<usize> = (0..categories.features())
            .filter(|&c| categories.column(c).is_none())
            .collect();
        let numeric: Vec<f32> = self
            .x
            .chunks_exact(self.features)
            .flat_map(|row| numeric_columns.iter().map(move |&c| row[c]))
            .collect();
        let x = categories.one_hot(self.rows, &numeric, &codes);
        Ok(CsvTable {
            data: Dataset::new(x, categories.inputs(), targets)?,
            categories: Some(categories),
        })
    }

    /// The first cell (by row, then column) that is not a number in a
    /// column that has numbers.
    fn check_no_stray_text(&self) -> Result<()> {
        let stray = self
            .cells
            .iter()
            .enumerate()
            .filter_map(|(c, cells)| match cells {
                Cells::Undecided {
                    text,
                    numbers: true,
                } => text.first().map(|(line, field)| (*line, c, field)),
                _ => None,
            })
            .min();
        match stray {
            Some((line, c, field)) => Err(self.error(format!(
                "row {line}, column {}: `{field}` is not a number",
                c + 1
            ))),
            None => Ok(()),
        }
    }

    /// The categorical columns, and each row's slots (row-major).
    fn categories(&mut self) -> Result<(Option<Categories>, Vec<u32>)> {
        let mut columns = Vec::new();
        let mut by_column = Vec::new();
        for (c, cells) in self.cells.iter_mut().enumerate() {
            match cells {
                Cells::Undecided {
                    text,
                    numbers: false,
                }
                | Cells::Text(text) => {
                    let name = self.header.as_ref().and_then(|h| h.get(c)).cloned();
                    let (column, codes) = found(c, name, std::mem::take(text), self.path)?;
                    columns.push(column);
                    by_column.push(codes);
                }
                Cells::Coded { codes, .. } => by_column.push(std::mem::take(codes)),
                _ => {}
            }
        }
        let categories = match &self.options.categorical {
            CsvCategorical::Known(categories) => categories.clone(),
            _ if columns.is_empty() => return Ok((None, Vec::new())),
            _ => Categories::new(self.features, columns)?,
        };
        let codes = (0..self.rows)
            .flat_map(|r| by_column.iter().map(move |codes| codes[r]))
            .collect();
        Ok((Some(categories), codes))
    }
}

/// Column `c`'s categories, the distinct values of its `cells` sorted,
/// and each cell's slot among them; an empty cell is an error.
fn found(
    c: usize,
    name: Option<String>,
    cells: Vec<(usize, String)>,
    path: &Path,
) -> Result<(CategoricalColumn, Vec<u32>)> {
    let mut categories: Vec<&str> = cells.iter().map(|(_, v)| v.as_str()).collect();
    categories.sort_unstable();
    categories.dedup();
    let column = CategoricalColumn {
        column: c,
        name,
        categories: categories.iter().map(|v| v.to_string()).collect(),
    };
    if let Some((line, _)) = cells.iter().find(|(_, v)| v.is_empty()) {
        return Err(empty_cell(path, *line, &column));
    }
    let codes = cells
        .iter()
        .map(|(_, v)| categories.binary_search(&v.as_str()).unwrap_or(0) as u32)
        .collect();
    Ok((column, codes))
}

/// An empty cell in a categorical column: an error, as an empty cell in a
/// numeric one is.
fn empty_cell(path: &Path, line: usize, column: &CategoricalColumn) -> Error {
    Error::Parse {
        path: path.to_path_buf(),
        message: format!(
            "row {line}, {}: an empty cell in a categorical column; write a category for missing values (such as `missing`)",
            column.described()
        ),
    }
}

/// A numeric cell's value, checked finite and within f32's range; the
/// message names the row and column.
fn number(field: &str, line: usize, c: usize) -> std::result::Result<f64, String> {
    let column = c + 1;
    let value: f64 = field
        .parse()
        .map_err(|_| format!("row {line}, column {column}: `{field}` is not a number"))?;
    if !value.is_finite() {
        return Err(format!(
            "row {line}, column {column}: `{field}` is not a finite number"
        ));
    }
    // f32 is what trains: a value past its range would become infinite,
    // and be reported later without its place here.
    if value.abs() > f32::MAX as f64 {
        return Err(format!(
            "row {line}, column {column}: `{field}` is beyond the range of 32-bit floats (±{:e})",
            f32::MAX
        ));
    }
    Ok(value)
}
