//! A Parquet file's rows read a range at a time, never held whole: the
//! source `--stream` reads ([`ParquetSource`]).

use super::{
    Layout, Null, ParquetColumns, guarded, input_columns, labelled_columns, open, open_file, parse,
    read,
};
use crate::error::Result;
use crate::io::values::{label, number};
use crate::stream::{Chunk, RowSource};
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use std::ops::Range;
use std::path::Path;

/// A Parquet file read a range of rows at a time ([`RowSource`]): what
/// `--stream` trains, validates and predicts on. The file's footer is read
/// once; each read opens the file, decodes the row groups that hold the
/// rows (the rows around them skipped), only the chosen columns, 8192 rows
/// at a time, with the same arithmetic and errors as
/// [`Dataset::from_parquet`](crate::data::Dataset::from_parquet), so the
/// rows are that data set's, bit for bit.
///
/// ```no_run
/// use retroprop::io::parquet::{ParquetColumns, ParquetSource};
/// use retroprop::stream::{RowSource, Streamed};
/// let source = ParquetSource::open("big.parquet".as_ref(), &ParquetColumns::default(), false)?;
/// println!("{} rows of {} features", source.rows(), source.features());
/// let streamed = Streamed::new(source);
/// # Ok::<(), retroprop::Error>(())
/// ```
pub struct ParquetSource {
    path: std::path::PathBuf,
    metadata: ArrowReaderMetadata,
    layout: Layout,
    /// Features then targets, each with what a null in it reads as.
    columns: Vec<(usize, Null)>,
    features: usize,
    width: usize,
    classes: bool,
    rows: usize,
    fingerprint: u64,
}

impl ParquetSource {
    /// The chosen columns of the file at `path` ([`ParquetColumns`]): its
    /// features, and its targets as values or, with `classes`, as the
    /// labels of the one target column. Reads the footer and checks the
    /// columns; no row is read.
    pub fn open(path: &Path, columns: &ParquetColumns, classes: bool) -> Result<ParquetSource> {
        guarded(path, || {
            let (metadata, layout, file_length) = footer(path)?;
            let (chosen, features, width) = labelled_columns(&layout, path, columns, classes)?;
            ParquetSource::new(
                path,
                metadata,
                layout,
                file_length,
                chosen,
                (features, width, classes),
            )
        })
    }

    /// The inputs of the file at `path` to predict on with a model of
    /// `inputs` inputs: the columns `read_inputs` reads, and no targets.
    pub fn inputs(path: &Path, columns: &ParquetColumns, inputs: usize) -> Result<ParquetSource> {
        guarded(path, || {
            let (metadata, layout, file_length) = footer(path)?;
            let fill = columns.fill(path)?;
            let chosen = input_columns(&layout, path, columns, inputs)?
                .into_iter()
                .map(|c| (c, Null::Feature(fill)))
                .collect();
            ParquetSource::new(
                path,
                metadata,
                layout,
                file_length,
                chosen,
                (inputs, 0, false),
            )
        })
    }

    /// The feature columns of the file at `path` and no targets (their
    /// targets come from elsewhere: the Python package's `y`): the
    /// features named, or every column neither excluded nor named a target.
    pub fn features_only(path: &Path, columns: &ParquetColumns) -> Result<ParquetSource> {
        guarded(path, || {
            let (metadata, layout, file_length) = footer(path)?;
            let chosen = super::batches::feature_columns(&layout, path, columns)?;
            let features = chosen.len();
            ParquetSource::new(
                path,
                metadata,
                layout,
                file_length,
                chosen,
                (features, 0, false),
            )
        })
    }

    fn new(
        path: &Path,
        metadata: ArrowReaderMetadata,
        layout: Layout,
        file_length: u64,
        columns: Vec<(usize, Null)>,
        (features, width, classes): (usize, usize, bool),
    ) -> Result<ParquetSource> {
        let indices: Vec<usize> = columns.iter().map(|&(c, _)| c).collect();
        layout.check_numeric(&indices, path)?;
        let rows = metadata
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows() as usize)
            .sum();
        if rows == 0 {
            return Err(parse(path, "no data rows".into()));
        }
        // What describes the file: its length, row groups and the chosen
        // columns by name and type.
        let mut hash = crate::stream::Fnv::default();
        hash.add_words(&[file_length as u32, (file_length >> 32) as u32]);
        for g in metadata.metadata().row_groups() {
            hash.add_words(&[g.num_rows() as u32]);
        }
        for &c in &indices {
            let field = &layout.fields[c];
            hash.add_bytes(format!("{}:{}", field.name(), field.data_type()).as_bytes());
        }
        Ok(ParquetSource {
            path: path.to_path_buf(),
            metadata,
            layout,
            columns,
            features,
            width,
            classes,
            rows,
            fingerprint: hash.0,
        })
    }

    /// Decodes `columns` (of `self.columns`) of rows `rows`, handing each
    /// value to `put(row in the range, k, value)`.
    fn decode(
        &self,
        rows: Range<usize>,
        columns: &[(usize, Null)],
        put: impl FnMut(usize, usize, f64) -> std::result::Result<(), String>,
    ) -> Result<()> {
        let path = &self.path;
        let open = || open_file(path);
        read(
            &open,
            &self.metadata,
            &self.layout,
            columns,
            path,
            rows,
            put,
        )?;
        Ok(())
    }
}

/// A file's footer (its metadata, checked), its columns and row groups,
/// and its length.
fn footer(path: &Path) -> Result<(ArrowReaderMetadata, Layout, u64)> {
    let file = open_file(path)?;
    let file_length = parquet::file::reader::Length::len(&file);
    let (metadata, layout) = open(file, path)?;
    Ok((metadata, layout, file_length))
}

impl RowSource for ParquetSource {
    fn rows(&self) -> usize {
        self.rows
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
        self.path.display().to_string()
    }
    fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    fn read(&self, rows: Range<usize>, out: &mut Chunk) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let (f, w, classes) = (self.features, self.width, self.classes);
        let (x0, y0) = (out.x.len(), out.values.len().max(out.labels.len()));
        out.x.resize(x0 + rows.len() * f, 0.0);
        match (classes, w) {
            (_, 0) => {}
            (true, _) => out.labels.resize(y0 + rows.len(), 0),
            (false, _) => out.values.resize(y0 + rows.len() * w, 0.0),
        }
        let (x, labels, values) = (&mut out.x[x0..], &mut out.labels, &mut out.values);
        self.decode(rows, &self.columns, |row, k, value| {
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
        if rows.is_empty() || self.width == 0 {
            return Ok(());
        }
        let (w, classes) = (self.width, self.classes);
        let y0 = out.values.len().max(out.labels.len());
        match classes {
            true => out.labels.resize(y0 + rows.len(), 0),
            false => out.values.resize(y0 + rows.len() * w, 0.0),
        }
        let (labels, values) = (&mut out.labels, &mut out.values);
        self.decode(rows, &self.columns[self.features..], |row, k, value| {
            if classes {
                labels[y0 + row] = label(value)?;
            } else {
                values[y0 + row * w + k] = number(value)?;
            }
            Ok(())
        })
    }
}
