//! A table of Arrow record batches in memory read a range of rows at a
//! time ([`ArrowSource`]): what the Python package trains on when given a
//! `pyarrow.Table` (the batches lent through Arrow's C stream interface,
//! not copied). The columns are chosen, converted and refused as a
//! Parquet file's are ([`ParquetColumns`], the same arithmetic), so the
//! table written as Parquet gives the same rows, bit for bit.

use super::{Layout, Null, ParquetColumns, TargetColumns, column_values, find_all, parse};
use crate::error::Result;
use crate::io::values::{label, number};
use crate::stream::{Chunk, Fnv, RowSource};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Record batches of one schema read a range of rows at a time
/// ([`RowSource`]): only the chosen columns of the rows asked for are
/// converted, so what a read holds is its rows, never the table as
/// floats. Errors name the table (`name`), the column, the record batch
/// and the row.
///
/// ```
/// use arrow_array::{Float64Array, Int64Array, RecordBatch};
/// use arrow_schema::{DataType, Field, Schema};
/// use retroprop::io::parquet::{ArrowSource, ParquetColumns, TargetColumns};
/// use retroprop::stream::{Chunk, RowSource};
/// use std::sync::Arc;
/// let schema = Arc::new(Schema::new(vec![
///     Field::new("x", DataType::Float64, false),
///     Field::new("label", DataType::Int64, false),
/// ]));
/// let batch = RecordBatch::try_new(schema.clone(), vec![
///     Arc::new(Float64Array::from(vec![0.5, 1.5, 2.5])),
///     Arc::new(Int64Array::from(vec![0, 1, 0])),
/// ]).unwrap();
/// let columns = ParquetColumns { targets: TargetColumns::Named(vec!["label".into()]), ..Default::default() };
/// let table = ArrowSource::new("a table", schema, vec![batch], &columns, true)?;
/// let mut rows = Chunk::default();
/// table.read(1..3, &mut rows)?;
/// assert_eq!((rows.x, rows.labels), (vec![1.5, 2.5], vec![1, 0]));
/// # Ok::<(), retroprop::Error>(())
/// ```
pub struct ArrowSource {
    name: PathBuf,
    batches: Vec<RecordBatch>,
    layout: Layout,
    /// Features then targets, each with what a null in it reads as.
    columns: Vec<(usize, Null)>,
    features: usize,
    width: usize,
    classes: bool,
    fingerprint: u64,
}

impl ArrowSource {
    /// The chosen columns of `batches` (of `schema`; `name` names the
    /// table in errors): the features, and the targets as values or, with
    /// `classes`, as the labels of the one target column. Checks the
    /// columns; converts no row.
    pub fn new(
        name: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        columns: &ParquetColumns,
        classes: bool,
    ) -> Result<ArrowSource> {
        let (path, layout, batches) = ArrowSource::layout(name, schema, batches)?;
        let (chosen, features, width) = super::labelled_columns(&layout, &path, columns, classes)?;
        ArrowSource::with_columns(path, layout, batches, chosen, (features, width, classes))
    }

    /// The feature columns of `batches` and no targets (their targets come
    /// from elsewhere): the features named, or every column neither
    /// excluded nor named a target.
    pub fn features_only(
        name: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        columns: &ParquetColumns,
    ) -> Result<ArrowSource> {
        let (path, layout, batches) = ArrowSource::layout(name, schema, batches)?;
        let chosen = feature_columns(&layout, &path, columns)?;
        let features = chosen.len();
        ArrowSource::with_columns(path, layout, batches, chosen, (features, 0, false))
    }

    /// The table's columns and batches (the empty ones left out), checked
    /// to be of one schema and to hold rows.
    fn layout(
        name: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<(PathBuf, Layout, Vec<RecordBatch>)> {
        let path = PathBuf::from(name);
        let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
        if let Some(b) = batches
            .iter()
            .position(|b| b.schema().fields() != schema.fields())
        {
            return Err(parse(
                &path,
                format!("record batch {b} has columns other than the table's schema"),
            ));
        }
        let mut group_starts = Vec::with_capacity(batches.len());
        let mut rows = 0usize;
        for b in &batches {
            group_starts.push(rows);
            rows += b.num_rows();
        }
        if rows == 0 {
            return Err(parse(&path, "no data rows".into()));
        }
        let layout = Layout {
            fields: schema.fields().iter().cloned().collect(),
            group_starts,
            rows,
            words: ("record batch", "table"),
        };
        Ok((path, layout, batches))
    }

    fn with_columns(
        name: PathBuf,
        layout: Layout,
        batches: Vec<RecordBatch>,
        columns: Vec<(usize, Null)>,
        (features, width, classes): (usize, usize, bool),
    ) -> Result<ArrowSource> {
        let indices: Vec<usize> = columns.iter().map(|&(c, _)| c).collect();
        layout.check_numeric(&indices, &name)?;
        // What describes the table: its batches' rows and the chosen
        // columns by name and type.
        let mut hash = Fnv::default();
        for b in &batches {
            hash.add_words(&[b.num_rows() as u32]);
        }
        for &c in &indices {
            let field = &layout.fields[c];
            hash.add_bytes(format!("{}:{}", field.name(), field.data_type()).as_bytes());
        }
        Ok(ArrowSource {
            name,
            batches,
            layout,
            columns,
            features,
            width,
            classes,
            fingerprint: hash.0,
        })
    }

    /// Converts `columns` (of `self.columns`) of rows `rows`, handing each
    /// value to `put(row in the range, k, value)`; a null reads as its
    /// column's fill value or is an error naming its place.
    fn convert(
        &self,
        rows: Range<usize>,
        columns: &[(usize, Null)],
        mut put: impl FnMut(usize, usize, f64) -> std::result::Result<(), String>,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let (first, _) = self.layout.group_of(rows.start);
        let (last, _) = self.layout.group_of(rows.end - 1);
        for batch in first..=last {
            let start = self.layout.group_starts[batch];
            let end = self.layout.group_end(batch);
            let wanted = rows.start.max(start)..rows.end.min(end);
            let slice = self.batches[batch].slice(wanted.start - start, wanted.len());
            for (k, &(c, null)) in columns.iter().enumerate() {
                let values = column_values(slice.column(c))
                    .expect("every column was checked to hold numbers");
                for (i, value) in values.into_iter().enumerate() {
                    let at = wanted.start + i;
                    let value = match (value, null) {
                        (Some(v), _) | (None, Null::Feature(Some(v))) => v,
                        (None, Null::Feature(None)) => {
                            return Err(parse(
                                &self.name,
                                format!(
                                    "{}: null (give a value for nulls in the features: fill_null)",
                                    self.layout.place(c, at)
                                ),
                            ));
                        }
                        (None, Null::Target) => {
                            return Err(parse(
                                &self.name,
                                format!(
                                    "{}: null in a target column (targets are never filled in: leave the row out)",
                                    self.layout.place(c, at)
                                ),
                            ));
                        }
                    };
                    put(at - rows.start, k, value).map_err(|message| {
                        parse(
                            &self.name,
                            format!("{}: {message}", self.layout.place(c, at)),
                        )
                    })?;
                }
            }
        }
        Ok(())
    }
}

/// The feature columns alone, each with what its nulls read as: those
/// named, or every column neither excluded nor named a target.
pub(super) fn feature_columns(
    layout: &Layout,
    path: &Path,
    columns: &ParquetColumns,
) -> Result<Vec<(usize, Null)>> {
    let named_targets = match &columns.targets {
        TargetColumns::Named(names) => find_all(layout, names, "the targets", path)?,
        TargetColumns::Last(_) => Vec::new(),
    };
    let fill = columns.fill(path)?;
    Ok(columns
        .feature_indices(layout, &named_targets, path)?
        .into_iter()
        .map(|c| (c, Null::Feature(fill)))
        .collect())
}

impl RowSource for ArrowSource {
    fn rows(&self) -> usize {
        self.layout.rows
    }
    fn features(&self) -> usize {
        self.features
    }
    fn target_width(&self) -> usize {
        self.width
    }
    fn classes(&self) -> bool {
        self.classes
    }
    fn name(&self) -> String {
        self.name.display().to_string()
    }
    fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    fn read(&self, rows: Range<usize>, out: &mut Chunk) -> Result<()> {
        let (f, w, classes) = (self.features, self.width, self.classes);
        let (x0, y0) = (out.x.len(), out.values.len().max(out.labels.len()));
        out.x.resize(x0 + rows.len() * f, 0.0);
        match (classes, w) {
            (_, 0) => {}
            (true, _) => out.labels.resize(y0 + rows.len(), 0),
            (false, _) => out.values.resize(y0 + rows.len() * w, 0.0),
        }
        let (x, labels, values) = (&mut out.x[x0..], &mut out.labels, &mut out.values);
        self.convert(rows, &self.columns, |row, k, value| {
            if k < f {
                x[row * f + k] = number(value)?;
            } else if classes {
                labels[y0 + row] = label(value)?;
            } else {
                values[y0 + row * w + k - f] = number(value)?;
            }
            Ok(())
        })
    }

    fn read_targets(&self, rows: Range<usize>, out: &mut Chunk) -> Result<()> {
        if self.width == 0 {
            return Ok(());
        }
        let (w, classes) = (self.width, self.classes);
        let y0 = out.values.len().max(out.labels.len());
        match classes {
            true => out.labels.resize(y0 + rows.len(), 0),
            false => out.values.resize(y0 + rows.len() * w, 0.0),
        }
        let (labels, values) = (&mut out.labels, &mut out.values);
        self.convert(rows, &self.columns[self.features..], |row, k, value| {
            if classes {
                labels[y0 + row] = label(value)?;
            } else {
                values[y0 + row * w + k] = number(value)?;
            }
            Ok(())
        })
    }
}
