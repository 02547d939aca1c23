//! Data sets from Parquet files (arrow-rs's `parquet` crate decodes them,
//! every codec pyarrow, pandas, polars and Spark write), and columns
//! written to one (`retroprop predict --out x.parquet`).
//!
//! Columns are chosen by name ([`ParquetColumns`]): the targets named, or
//! by default the last column, as a CSV file's last `--targets N` columns
//! are; the features named, or by default every other column in the
//! file's order. Only the chosen columns are decoded. Each must hold
//! numbers: integers of any width and sign, float16, float32, float64,
//! decimals, or booleans (0 and 1); each value goes to f64 and then to f32
//! as every reader's does (`io::values`), so the same table as CSV
//! gives the same data set, bit for bit. An integer beyond 2^24 is rounded
//! to the nearest f32 (through f64, as CSV's reading of its digits
//! rounds it). A decimal is read from its digits, as CSV reads them.
//!
//! A null is an error naming the column, the row group, the row in it and
//! the row in the file (all from 0), unless a fill value is given
//! ([`ParquetColumns::fill_null`]), which replaces nulls in the feature
//! columns; a target is never filled in. NaN and infinities are values,
//! not nulls: they are refused with their place, as in CSV.

use super::values::{label, number};
use crate::data::{Dataset, Targets};
use crate::error::{Error, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Decimal32Type, Decimal64Type, Decimal128Type, Decimal256Type, DecimalType, Float16Type,
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, Float32Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
};
use parquet::file::reader::ChunkReader;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

mod batches;
mod source;
pub use batches::ArrowSource;
pub use source::ParquetSource;

/// Which columns of a Parquet file are targets and which are features,
/// and what a null in a feature column reads as.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParquetColumns {
    /// The feature columns by name, in this order. `None`: every column
    /// that is neither a target nor in [`exclude`](Self::exclude), in the
    /// file's order.
    pub features: Option<Vec<String>>,
    /// The target columns.
    pub targets: TargetColumns,
    /// Columns left out of the default features (an identifier, a text
    /// column); only without [`features`](Self::features).
    pub exclude: Vec<String>,
    /// The value a null in a feature column reads as; `None`: a null is
    /// an error naming its place.
    pub fill_null: Option<f64>,
}

/// The target columns of a table.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetColumns {
    /// The last N columns of the file, as a CSV file's targets are.
    Last(usize),
    /// These columns, by name, in this order.
    Named(Vec<String>),
}

impl Default for TargetColumns {
    /// The last column.
    fn default() -> TargetColumns {
        TargetColumns::Last(1)
    }
}

fn parse(path: &Path, message: String) -> Error {
    Error::Parse {
        path: path.to_path_buf(),
        message,
    }
}

/// A Parquet file's top-level columns, and where each row group starts
/// in the file's rows (or a table's in memory, and its record batches:
/// parquet/batches.rs).
struct Layout {
    fields: Vec<Arc<Field>>,
    group_starts: Vec<usize>,
    /// Rows in the file.
    rows: usize,
    /// The parts in words, for errors: `row group` and `file`, or
    /// `record batch` and `table`.
    words: (&'static str, &'static str),
}

impl Layout {
    fn of(metadata: &ArrowReaderMetadata) -> Layout {
        let mut group_starts = Vec::new();
        let mut start = 0usize;
        for group in metadata.metadata().row_groups() {
            group_starts.push(start);
            start = start.saturating_add(usize::try_from(group.num_rows()).unwrap_or(0));
        }
        Layout {
            fields: metadata.schema().fields().iter().cloned().collect(),
            group_starts,
            rows: start,
            words: ("row group", "file"),
        }
    }

    /// The end of row group `group`'s rows in the file's.
    fn group_end(&self, group: usize) -> usize {
        self.group_starts
            .get(group + 1)
            .copied()
            .unwrap_or(self.rows)
    }

    /// The columns' names, for an error: the first 20 of a wide table.
    fn names(&self) -> String {
        const SHOWN: usize = 20;
        let names: Vec<&str> = self
            .fields
            .iter()
            .take(SHOWN)
            .map(|f| f.name().as_str())
            .collect();
        match self.fields.len() {
            n if n > SHOWN => format!("{}, … ({n} in all)", names.join(", ")),
            _ => names.join(", "),
        }
    }

    /// The column called `name`, or an error listing the columns there are.
    fn find(&self, name: &str, path: &Path) -> Result<usize> {
        self.fields
            .iter()
            .position(|f| f.name() == name)
            .ok_or_else(|| {
                parse(
                    path,
                    format!("no column `{name}` (the file's columns: {})", self.names()),
                )
            })
    }

    /// The row group that holds row `row` of the file, and its first row.
    fn group_of(&self, row: usize) -> (usize, usize) {
        let group = self.group_starts.partition_point(|&s| s <= row).max(1) - 1;
        (group, self.group_starts.get(group).copied().unwrap_or(0))
    }

    /// `column `c`, row group g, row i of the group (row r of the file;
    /// counted from 0)` (of a table: record batch b, row r of the table).
    fn place(&self, column: usize, row: usize) -> String {
        let (group, start) = self.group_of(row);
        let (part, whole) = self.words;
        format!(
            "column `{}`, {part} {group}, row {} of the {} (row {row} of the {whole}; counted from 0)",
            self.fields[column].name(),
            row.saturating_sub(start),
            part.rsplit(' ').next().unwrap_or(part),
        )
    }

    /// An error unless every one of `columns` holds numbers.
    fn check_numeric(&self, columns: &[usize], path: &Path) -> Result<()> {
        for &c in columns {
            let field = &self.fields[c];
            if !is_numeric(field.data_type()) {
                return Err(parse(
                    path,
                    format!(
                        "column `{}` holds {} values, not numbers: leave it out (name the features, or exclude it: --features, --exclude in the program){}",
                        field.name(),
                        field.data_type(),
                        match is_text(field.data_type()) {
                            true =>
                                "; a categorical feature is read from a CSV file (a column of text, or --categorical in the program), or one-hot encode it first",
                            false => "",
                        }
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// What a null in a column reads as.
#[derive(Clone, Copy)]
enum Null {
    /// A feature's null, with the fill value if one was given.
    Feature(Option<f64>),
    /// A target's null: always an error.
    Target,
}

/// Decodes `columns` (file indices, none twice) of rows `rows` of the
/// file and hands each value to `put(row, k, value)`, `k` the column's
/// place in `columns` and `row` counted from `rows.start`; a null reads as
/// its column's fill value or is an error. Each row group is decoded by a
/// reader of its own (`open` gives each its reader of the file), so that
/// an error names the group that failed. Errors name the place. Returns
/// the rows read.
fn read<R: ChunkReader + 'static>(
    open: &dyn Fn() -> Result<R>,
    metadata: &ArrowReaderMetadata,
    layout: &Layout,
    columns: &[(usize, Null)],
    path: &Path,
    rows: Range<usize>,
    mut put: impl FnMut(usize, usize, f64) -> std::result::Result<(), String>,
) -> Result<usize> {
    let mut read = 0;
    if rows.is_empty() {
        return Ok(0);
    }
    let (first, _) = layout.group_of(rows.start);
    let (last, _) = layout.group_of(rows.end - 1);
    for group in first..=last {
        let start = layout.group_starts[group];
        let end = layout.group_end(group);
        let wanted = rows.start.max(start)..rows.end.min(end);
        let mut builder =
            ParquetRecordBatchReaderBuilder::new_with_metadata(open()?, metadata.clone())
                .with_row_groups(vec![group]);
        if wanted != (start..end) {
            builder = builder.with_row_selection(RowSelection::from(vec![
                RowSelector::skip(wanted.start - start),
                RowSelector::select(wanted.len()),
                RowSelector::skip(end - wanted.end),
            ]));
        }
        let offset = wanted.start - rows.start;
        let put = |row, k, value| put(offset + row, k, value);
        // A panic in the decoder (a malformed page) is this group's error.
        let decoded = guarded(path, || {
            read_group(builder, group, layout, columns, path, wanted.clone(), put)
        })
        .map_err(|e| match e {
            Error::Parse { path, message } if message.starts_with("a malformed") => Error::Parse {
                path,
                message: format!("row group {group}: {message}"),
            },
            e => e,
        })?;
        if decoded != wanted.len() {
            return Err(parse(
                path,
                format!(
                    "row group {group}: {decoded} rows decoded where {} were to be: a malformed file",
                    wanted.len()
                ),
            ));
        }
        read += decoded;
    }
    Ok(read)
}

/// [`read`]'s work in row group `group`: `builder` reads rows `rows` of
/// the file, which lie in it.
fn read_group<R: ChunkReader + 'static>(
    builder: ParquetRecordBatchReaderBuilder<R>,
    group: usize,
    layout: &Layout,
    columns: &[(usize, Null)],
    path: &Path,
    rows: Range<usize>,
    mut put: impl FnMut(usize, usize, f64) -> std::result::Result<(), String>,
) -> Result<usize> {
    let first_row = rows.start;
    let indices: Vec<usize> = columns.iter().map(|&(c, _)| c).collect();
    layout.check_numeric(&indices, path)?;
    // A decoded batch holds the chosen columns in the file's order.
    let mut in_file_order = indices.clone();
    in_file_order.sort_unstable();
    let mask = ProjectionMask::roots(builder.parquet_schema(), in_file_order.iter().copied());
    let batches = builder
        .with_projection(mask)
        .with_batch_size(8192)
        .build()
        .map_err(|e| {
            parse(
                path,
                format!("row group {group}: cannot read the columns ({e})"),
            )
        })?;
    let mut row = 0;
    for batch in batches {
        let batch: RecordBatch = batch.map_err(|e| {
            let start = layout.group_starts[group];
            parse(
                path,
                format!(
                    "cannot decode row group {group} (the rows from row {} of the group, row {} of the file, on): {e}",
                    first_row + row - start,
                    first_row + row
                ),
            )
        })?;
        for (k, &(c, null)) in columns.iter().enumerate() {
            let position = in_file_order.partition_point(|&i| i < c);
            let values = column_values(batch.column(position))
                .expect("every column was checked to hold numbers");
            for (i, value) in values.into_iter().enumerate() {
                let at = first_row + row + i;
                let value = match (value, null) {
                    (Some(v), _) | (None, Null::Feature(Some(v))) => v,
                    (None, Null::Feature(None)) => {
                        return Err(parse(
                            path,
                            format!(
                                "{}: null (give a value for nulls in the features: --fill-null in the program)",
                                layout.place(c, at)
                            ),
                        ));
                    }
                    (None, Null::Target) => {
                        return Err(parse(
                            path,
                            format!(
                                "{}: null in a target column (targets are never filled in: leave the row out)",
                                layout.place(c, at)
                            ),
                        ));
                    }
                };
                put(at - first_row, k, value).map_err(|message| {
                    parse(path, format!("{}: {message}", layout.place(c, at)))
                })?;
            }
        }
        row += batch.num_rows();
    }
    Ok(row)
}

/// Whether a column of this type holds text (categories, as like as not).
fn is_text(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, values) => is_text(values),
        _ => false,
    }
}

/// Whether a column of this type reads as numbers.
fn is_numeric(data_type: &DataType) -> bool {
    use DataType::*;
    matches!(
        data_type,
        Boolean
            | Int8
            | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Float16
            | Float32
            | Float64
            | Decimal32(..)
            | Decimal64(..)
            | Decimal128(..)
            | Decimal256(..)
    )
}

/// A column's values as f64 (`None` for a null), or `None` when it does
/// not hold numbers. Integers round to the nearest f64 (`as`), as their
/// digits in a CSV file do; decimals are read from their digits.
fn column_values(array: &ArrayRef) -> Option<Vec<Option<f64>>> {
    macro_rules! primitive {
        ($t:ty, $to_f64:expr) => {
            array
                .as_primitive::<$t>()
                .iter()
                .map(|v| v.map($to_f64))
                .collect()
        };
    }
    fn decimal<T: DecimalType>(array: &ArrayRef) -> Vec<Option<f64>> {
        let array = array.as_primitive::<T>();
        (0..array.len())
            .map(|i| {
                array
                    .is_valid(i)
                    .then(|| array.value_as_string(i).parse().unwrap_or(f64::NAN))
            })
            .collect()
    }
    Some(match array.data_type() {
        DataType::Boolean => array
            .as_boolean()
            .iter()
            .map(|v| v.map(|b| if b { 1.0 } else { 0.0 }))
            .collect(),
        DataType::Int8 => primitive!(Int8Type, f64::from),
        DataType::Int16 => primitive!(Int16Type, f64::from),
        DataType::Int32 => primitive!(Int32Type, f64::from),
        DataType::Int64 => primitive!(Int64Type, |v| v as f64),
        DataType::UInt8 => primitive!(UInt8Type, f64::from),
        DataType::UInt16 => primitive!(UInt16Type, f64::from),
        DataType::UInt32 => primitive!(UInt32Type, f64::from),
        DataType::UInt64 => primitive!(UInt64Type, |v| v as f64),
        DataType::Float16 => primitive!(Float16Type, |v| v.to_f64()),
        DataType::Float32 => primitive!(Float32Type, f64::from),
        DataType::Float64 => primitive!(Float64Type, |v| v),
        DataType::Decimal32(..) => decimal::<Decimal32Type>(array),
        DataType::Decimal64(..) => decimal::<Decimal64Type>(array),
        DataType::Decimal128(..) => decimal::<Decimal128Type>(array),
        DataType::Decimal256(..) => decimal::<Decimal256Type>(array),
        _ => return None,
    })
}

/// Distinct names, each a column of the file: their indices.
fn find_all(layout: &Layout, names: &[String], what: &str, path: &Path) -> Result<Vec<usize>> {
    let mut found = Vec::with_capacity(names.len());
    for name in names {
        let c = layout.find(name, path)?;
        if found.contains(&c) {
            return Err(parse(path, format!("{what} name column `{name}` twice")));
        }
        found.push(c);
    }
    Ok(found)
}

impl ParquetColumns {
    /// The target columns' indices in the file.
    fn target_indices(&self, layout: &Layout, path: &Path) -> Result<Vec<usize>> {
        let columns = layout.fields.len();
        match &self.targets {
            TargetColumns::Named(names) if names.is_empty() => {
                Err(parse(path, "no target column named".into()))
            }
            TargetColumns::Named(names) => find_all(layout, names, "the targets", path),
            TargetColumns::Last(n) if *n == 0 || *n >= columns => Err(parse(
                path,
                format!(
                    "the file has {columns} columns, but the last {n} were to be targets: at least one target and one feature column are needed"
                ),
            )),
            TargetColumns::Last(n) => Ok((columns - n..columns).collect()),
        }
    }

    /// The feature columns' indices: those named, or every column that is
    /// not in `leave_out` nor excluded.
    fn feature_indices(
        &self,
        layout: &Layout,
        leave_out: &[usize],
        path: &Path,
    ) -> Result<Vec<usize>> {
        let excluded = find_all(layout, &self.exclude, "the excluded columns", path)?;
        let features = match &self.features {
            Some(_) if !excluded.is_empty() => {
                return Err(parse(
                    path,
                    "columns are excluded only from the default features: with the features named, name only those".into(),
                ));
            }
            Some(names) => {
                let features = find_all(layout, names, "the features", path)?;
                if let Some(c) = features.iter().find(|c| leave_out.contains(c)) {
                    return Err(parse(
                        path,
                        format!(
                            "column `{}` is both a feature and a target",
                            layout.fields[*c].name()
                        ),
                    ));
                }
                features
            }
            None => (0..layout.fields.len())
                .filter(|c| !leave_out.contains(c) && !excluded.contains(c))
                .collect(),
        };
        if features.is_empty() {
            return Err(parse(path, "no feature columns are left".into()));
        }
        Ok(features)
    }

    fn fill(&self, path: &Path) -> Result<Option<f64>> {
        match self.fill_null {
            Some(v) => number(v)
                .map(|_| Some(v))
                .map_err(|message| parse(path, format!("the value for nulls: {message}"))),
            None => Ok(None),
        }
    }
}

/// A file's footer (its metadata, checked) and its columns and row
/// groups.
fn open<R: ChunkReader + 'static>(reader: R, path: &Path) -> Result<(ArrowReaderMetadata, Layout)> {
    let file_length = reader.len();
    let metadata = ArrowReaderMetadata::load(&reader, Default::default())
        .map_err(|e| parse(path, format!("not a readable Parquet file ({e})")))?;
    check_chunks(&metadata, file_length, path)?;
    let layout = Layout::of(&metadata);
    Ok((metadata, layout))
}

/// Every column chunk within the file and every row count whole, as
/// Arrow's C++ reader checks: the parquet crate panics on a negative
/// offset or size (apache/arrow-rs#6255) and reads past the end on a
/// large one.
fn check_chunks(metadata: &ArrowReaderMetadata, file_length: u64, path: &Path) -> Result<()> {
    for (g, group) in metadata.metadata().row_groups().iter().enumerate() {
        if group.num_rows() < 0 {
            return Err(parse(
                path,
                format!(
                    "row group {g} claims {} rows: a malformed file",
                    group.num_rows()
                ),
            ));
        }
        for chunk in group.columns() {
            let start = chunk
                .dictionary_page_offset()
                .unwrap_or(chunk.data_page_offset());
            let length = chunk.compressed_size();
            let end = u64::try_from(start)
                .ok()
                .zip(u64::try_from(length).ok())
                .and_then(|(s, l)| s.checked_add(l));
            if end.is_none_or(|end| end > file_length) {
                return Err(parse(
                    path,
                    format!(
                        "row group {g}, column `{}`: its data ({length} bytes at {start}) is not within the file's {file_length} bytes: a malformed file",
                        chunk.column_path()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Runs `read` and turns a panic in the parquet crate into an error
/// naming the file: on some malformed files its decoder still panics
/// where it should return an error (the dictionary decoder on a corrupted
/// page, apache/arrow-rs#6255 and the like). Our own checks come first;
/// this is the last line. A program built with `panic = "abort"` aborts.
fn guarded<T>(path: &Path, read: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(parse(
            path,
            format!("a malformed Parquet file: the decoder failed ({why})"),
        ))
    })
}

/// The columns chosen, each with what its nulls read as; the features
/// and the targets a row.
type ChosenColumns = (Vec<(usize, Null)>, usize, usize);

/// The columns of a labelled data set, features then targets, each with
/// what its nulls read as; and the features and targets a row.
fn labelled_columns(
    layout: &Layout,
    path: &Path,
    columns: &ParquetColumns,
    classes: bool,
) -> Result<ChosenColumns> {
    let targets = columns.target_indices(layout, path)?;
    let features = columns.feature_indices(layout, &targets, path)?;
    let fill = columns.fill(path)?;
    if classes && targets.len() != 1 {
        return Err(parse(
            path,
            format!(
                "class labels come from one column, but {} target columns were asked for",
                targets.len()
            ),
        ));
    }
    let chosen = features
        .iter()
        .map(|&c| (c, Null::Feature(fill)))
        .chain(targets.iter().map(|&c| (c, Null::Target)))
        .collect();
    Ok((chosen, features.len(), targets.len()))
}

fn labelled<R: ChunkReader + 'static>(
    reader: &dyn Fn() -> Result<R>,
    path: &Path,
    columns: &ParquetColumns,
    classes: bool,
) -> Result<Dataset> {
    let (metadata, layout) = open(reader()?, path)?;
    let (chosen, f, w) = labelled_columns(&layout, path, columns, classes)?;
    let (mut x, mut values, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    let all = 0..layout.rows;
    let rows = read(
        reader,
        &metadata,
        &layout,
        &chosen,
        path,
        all,
        |row, k, value| {
            // Rows arrive batch by batch: grow to hold the row first.
            if x.len() < (row + 1) * f {
                x.resize((row + 1) * f, 0.0);
                if classes {
                    labels.resize(row + 1, 0);
                } else {
                    values.resize((row + 1) * w, 0.0);
                }
            }
            if k < f {
                x[row * f + k] = number(value)?;
            } else if classes {
                labels[row] = label(value)?;
            } else {
                values[row * w + k - f] = number(value)?;
            }
            Ok(())
        },
    )?;
    if rows == 0 {
        return Err(parse(path, "no data rows".into()));
    }
    let targets = if classes {
        Targets::Classes(labels)
    } else {
        Targets::Values { values, width: w }
    };
    Dataset::new(x, f, targets)
}

/// The columns a model of `inputs` inputs predicts from: the features
/// named (as many as its inputs), or the first `inputs` columns of the
/// file that are not excluded nor named targets.
fn input_columns(
    layout: &Layout,
    path: &Path,
    columns: &ParquetColumns,
    inputs: usize,
) -> Result<Vec<usize>> {
    let named_targets = match &columns.targets {
        TargetColumns::Named(names) => find_all(layout, names, "the targets", path)?,
        TargetColumns::Last(_) => Vec::new(),
    };
    let mut features = columns.feature_indices(layout, &named_targets, path)?;
    match &columns.features {
        Some(_) if features.len() != inputs => {
            return Err(parse(
                path,
                format!(
                    "{} feature columns were named, but the model takes {inputs} inputs",
                    features.len()
                ),
            ));
        }
        None if features.len() < inputs => {
            return Err(parse(
                path,
                format!(
                    "{} columns can be features, but the model takes {inputs} inputs",
                    features.len()
                ),
            ));
        }
        // As with CSV, the first columns are the inputs; any after them
        // (targets) are not read.
        _ => features.truncate(inputs),
    }
    Ok(features)
}

fn inputs<R: ChunkReader + 'static>(
    reader: &dyn Fn() -> Result<R>,
    path: &Path,
    columns: &ParquetColumns,
    inputs: usize,
) -> Result<Vec<f32>> {
    let (metadata, layout) = open(reader()?, path)?;
    let features = input_columns(&layout, path, columns, inputs)?;
    let fill = columns.fill(path)?;
    let chosen: Vec<(usize, Null)> = features.iter().map(|&c| (c, Null::Feature(fill))).collect();
    let mut x = Vec::new();
    let all = 0..layout.rows;
    let rows = read(
        reader,
        &metadata,
        &layout,
        &chosen,
        path,
        all,
        |row, k, value| {
            if x.len() < (row + 1) * inputs {
                x.resize((row + 1) * inputs, 0.0);
            }
            x[row * inputs + k] = number(value)?;
            Ok(())
        },
    )?;
    if rows == 0 {
        return Err(parse(path, "no data rows".into()));
    }
    Ok(x)
}

impl Dataset {
    /// Reads a Parquet file's chosen columns ([`ParquetColumns`]): the
    /// features as inputs, the targets as values, or with `classes` the
    /// one target column as class indices 0, 1, 2, … Errors name the file,
    /// the column, the row group and the row.
    pub fn from_parquet(
        path: impl AsRef<Path>,
        columns: &ParquetColumns,
        classes: bool,
    ) -> Result<Dataset> {
        let path = path.as_ref();
        guarded(path, || {
            labelled(&|| open_file(path), path, columns, classes)
        })
    }

    /// [`from_parquet`](Self::from_parquet) on a file's bytes; `path`
    /// names it in errors.
    pub fn from_parquet_bytes(
        bytes: Vec<u8>,
        path: &Path,
        columns: &ParquetColumns,
        classes: bool,
    ) -> Result<Dataset> {
        let bytes = bytes::Bytes::from(bytes);
        guarded(path, || {
            labelled(&|| Ok(bytes.clone()), path, columns, classes)
        })
    }
}

/// The inputs of a Parquet file to predict on, row-major: the feature
/// columns named (as many as the model's `inputs`), or the first `inputs`
/// columns of the file that are not excluded nor named targets (as the
/// first columns of a CSV file are). Only those columns are read.
pub fn read_inputs(path: &Path, columns: &ParquetColumns, model_inputs: usize) -> Result<Vec<f32>> {
    open_file(path)?;
    guarded(path, || {
        inputs(&|| open_file(path), path, columns, model_inputs)
    })
}

/// The file at `path`, opened to read.
fn open_file(path: &Path) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// One column of values to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Whole numbers (class indices, 0/1 labels): int64.
    Int64(Vec<i64>),
    /// Values and probabilities: float32.
    Float32(Vec<f32>),
}

/// Named columns of equal length as a Parquet file's bytes (one row
/// group, Snappy-compressed, as pyarrow writes by default).
pub fn parquet_bytes(columns: &[(String, Column)], path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut writer = ColumnsWriter::new(&mut bytes, columns, path)?;
    writer.write(columns)?;
    writer.finish()?;
    Ok(bytes)
}

/// Named columns written to Parquet a part of their rows at a time (the
/// predictions of a file streamed): each [`write`](Self::write) the
/// next rows of the same columns, Snappy-compressed, in row groups of up
/// to 2^20 rows.
pub struct ColumnsWriter<W: std::io::Write + Send> {
    writer: parquet::arrow::ArrowWriter<W>,
    schema: Arc<Schema>,
    path: std::path::PathBuf,
}

impl<W: std::io::Write + Send> ColumnsWriter<W> {
    /// A writer to `out` of columns named and typed as `columns`; `path`
    /// names the file in errors.
    pub fn new(out: W, columns: &[(String, Column)], path: &Path) -> Result<ColumnsWriter<W>> {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, column)| match column {
                Column::Int64(_) => Field::new(name, DataType::Int64, false),
                Column::Float32(_) => Field::new(name, DataType::Float32, false),
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let properties = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let writer = parquet::arrow::ArrowWriter::try_new(out, schema.clone(), Some(properties))
            .map_err(|e| parse(path, format!("cannot write Parquet: {e}")))?;
        Ok(ColumnsWriter {
            writer,
            schema,
            path: path.to_path_buf(),
        })
    }

    /// Writes the next rows of every column.
    pub fn write(&mut self, columns: &[(String, Column)]) -> Result<()> {
        let arrays: Vec<ArrayRef> = columns
            .iter()
            .map(|(_, column)| match column {
                Column::Int64(v) => Arc::new(Int64Array::from(v.clone())) as ArrayRef,
                Column::Float32(v) => Arc::new(Float32Array::from(v.clone())) as ArrayRef,
            })
            .collect();
        let fail =
            |e: &dyn std::fmt::Display| parse(&self.path, format!("cannot write Parquet: {e}"));
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| fail(&e))?;
        self.writer.write(&batch).map_err(|e| fail(&e))
    }

    /// Ends the file (its footer), and gives back what it was written to.
    pub fn finish(self) -> Result<W> {
        let path = self.path;
        self.writer
            .into_inner()
            .map_err(|e| parse(&path, format!("cannot write Parquet: {e}")))
    }
}

/// Writes named columns to `path` as Parquet, atomically
/// ([`super::write_atomic`]).
pub fn write_parquet(path: &Path, columns: &[(String, Column)]) -> Result<()> {
    super::write_atomic(path, &parquet_bytes(columns, path)?)
}
