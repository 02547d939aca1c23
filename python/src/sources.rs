//! `NativeSource`: rows `fit`, `evaluate` and `predict` read a part at a
//! time instead of holding them (the library's `RowSource`, streamed by
//! `Trainer::fit_streamed`): a Parquet or `.npy` file (the library's
//! `ParquetSource`, `NpySource`, the program's `--stream`), a `.npz`
//! archive (read whole, as the program reads it), a pyarrow Table (its
//! record batches lent through Arrow's C stream interface, converted a
//! range of rows at a time: `ArrowSource`), a NumPy array of any numeric
//! dtype and layout (a memory map: `ArraySource` reads its rows where they
//! lie), and arrays held in memory (a `Dataset`, for validation beside a
//! streamed training set). A source of inputs alone takes its targets
//! from `y` (`WithTargets`).

use crate::errors::{guard, to_py};
use arrow_array::ffi_stream::{FFI_ArrowArrayStream, RecordBatchStreamReader};
use arrow_array::{RecordBatch, RecordBatchReader};
use numpy::{
    PyArray1, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyCapsuleMethods};
use retroprop::io::npy::NpySource;
use retroprop::io::parquet::{ArrowSource, ParquetColumns, ParquetSource, TargetColumns};
use retroprop::stream::{Chunk, Fnv, RowSource, Streamed};
use retroprop::{Dataset, Error, Targets};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

/// Rows to read a part at a time; see the module's documentation. Made by
/// `retroprop._core`'s `_source` from what `fit` was given.
#[pyclass(module = "retroprop._retroprop", frozen)]
pub struct NativeSource {
    pub source: Arc<dyn RowSource>,
}

impl NativeSource {
    /// The rows as the library streams them, unscaled.
    pub fn streamed(&self) -> Streamed {
        Streamed::new(self.source.clone())
    }
}

fn wrap(source: impl RowSource + 'static) -> NativeSource {
    NativeSource {
        source: Arc::new(source),
    }
}

/// The column rules of the program's `--target`, `--features`,
/// `--exclude` and `--fill-null`: the targets named, or the last column.
fn columns(
    target: Option<Vec<String>>,
    features: Option<Vec<String>>,
    exclude: Vec<String>,
    fill_null: Option<f64>,
) -> ParquetColumns {
    ParquetColumns {
        features,
        targets: match target {
            Some(names) => TargetColumns::Named(names),
            None => TargetColumns::Last(1),
        },
        exclude,
        fill_null,
    }
}

/// A table's record batches through Arrow's C stream interface
/// (`__arrow_c_stream__`, pyarrow 14 on): the batches reference the
/// table's buffers, which stay alive (pyarrow's release callbacks) until
/// the last batch is dropped; nothing is copied.
fn arrow_batches(
    table: &Bound<'_, PyAny>,
) -> PyResult<(arrow_schema::SchemaRef, Vec<RecordBatch>)> {
    if !table.hasattr("__arrow_c_stream__")? {
        return Err(PyTypeError::new_err(format!(
            "a {} is not an Arrow table (no __arrow_c_stream__)",
            table.get_type().name()?
        )));
    }
    let capsule = table.call_method0("__arrow_c_stream__")?;
    let capsule = capsule
        .cast::<PyCapsule>()
        .map_err(|_| PyTypeError::new_err("__arrow_c_stream__ did not return a capsule"))?;
    let stream = capsule.pointer_checked(Some(c"arrow_array_stream"))?;
    // SAFETY: the capsule holds an ArrowArrayStream (its name says so);
    // `from_raw` moves it out and leaves it released, as the protocol
    // asks of a consumer, so the capsule's destructor frees nothing twice.
    let reader = unsafe {
        RecordBatchStreamReader::from_raw(stream.as_ptr().cast::<FFI_ArrowArrayStream>())
    }
    .map_err(|e| PyValueError::new_err(format!("the Arrow stream: {e}")))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PyValueError::new_err(format!("the Arrow stream: {e}")))?;
    Ok((schema, batches))
}

#[pymethods]
impl NativeSource {
    /// A Parquet file's chosen columns (`--target`, `--features`,
    /// `--exclude`, `--fill-null`), the targets as class labels with
    /// `classes`; with `features_only`, its features alone (the targets
    /// given with `with_targets`). Reads the footer only.
    #[staticmethod]
    #[pyo3(signature = (path, classes, target, features, exclude, fill_null, features_only))]
    fn parquet(
        path: PathBuf,
        classes: bool,
        target: Option<Vec<String>>,
        features: Option<Vec<String>>,
        exclude: Vec<String>,
        fill_null: Option<f64>,
        features_only: bool,
    ) -> PyResult<NativeSource> {
        let columns = columns(target, features, exclude, fill_null);
        let source = match features_only {
            true => ParquetSource::features_only(&path, &columns),
            false => ParquetSource::open(&path, &columns, classes),
        };
        source.map(wrap).map_err(to_py)
    }

    /// The inputs of a Parquet file to predict on with a model of `inputs`
    /// inputs: the columns `retroprop predict` reads.
    #[staticmethod]
    #[pyo3(signature = (path, inputs, target, features, exclude, fill_null))]
    fn parquet_inputs(
        path: PathBuf,
        inputs: usize,
        target: Option<Vec<String>>,
        features: Option<Vec<String>>,
        exclude: Vec<String>,
        fill_null: Option<f64>,
    ) -> PyResult<NativeSource> {
        let mut columns = columns(target.clone(), features, exclude, fill_null);
        if target.is_none() {
            columns.targets = TargetColumns::Named(Vec::new());
        }
        ParquetSource::inputs(&path, &columns, inputs)
            .map(wrap)
            .map_err(to_py)
    }

    /// An `.npy` array `[rows, columns]` whose last `target_columns`
    /// columns are the targets, read at its rows' offsets.
    #[staticmethod]
    fn npy(path: PathBuf, classes: bool, target_columns: usize) -> PyResult<NativeSource> {
        NpySource::open(&path, target_columns, classes)
            .map(wrap)
            .map_err(to_py)
    }

    /// An `.npz` archive's arrays `x` and `y`, read whole (its entries are
    /// compressed, or in a zip: no row is found without reading those
    /// before it).
    #[staticmethod]
    fn npz(path: PathBuf, classes: bool) -> PyResult<NativeSource> {
        Dataset::from_npz(&path, classes).map(wrap).map_err(to_py)
    }

    /// A table (`__arrow_c_stream__`: a pyarrow Table, RecordBatch,
    /// RecordBatchReader) by the column rules of `parquet`; `name` names
    /// it in errors. Its batches are lent, not copied; a reader's are
    /// gathered (held in Arrow's memory, not as floats).
    #[staticmethod]
    #[pyo3(signature = (table, name, classes, target, features, exclude, fill_null, features_only))]
    #[allow(clippy::too_many_arguments)]
    fn arrow(
        table: &Bound<'_, PyAny>,
        name: &str,
        classes: bool,
        target: Option<Vec<String>>,
        features: Option<Vec<String>>,
        exclude: Vec<String>,
        fill_null: Option<f64>,
        features_only: bool,
    ) -> PyResult<NativeSource> {
        let (schema, batches) = arrow_batches(table)?;
        let columns = columns(target, features, exclude, fill_null);
        let source = match features_only {
            true => ArrowSource::features_only(name, schema, batches, &columns),
            false => ArrowSource::new(name, schema, batches, &columns, classes),
        };
        source.map(wrap).map_err(to_py)
    }

    /// A 2-D NumPy array of numbers of any dtype, byte order and strides
    /// (a memory map), its rows read where they lie and converted as
    /// `numpy.asarray(x, numpy.float32)` converts them; inputs only.
    #[staticmethod]
    fn array(x: &Bound<'_, PyUntypedArray>, name: String) -> PyResult<NativeSource> {
        ArraySource::new(x, name).map(wrap)
    }

    /// Arrays held in memory: inputs float32 `[rows, features]`, and class
    /// indices or target values (a validation set beside a streamed
    /// training set). Copied.
    #[staticmethod]
    #[pyo3(signature = (x, classes, values))]
    fn held(
        x: PyReadonlyArray2<'_, f32>,
        classes: Option<PyReadonlyArray1<'_, u32>>,
        values: Option<PyReadonlyArray2<'_, f32>>,
    ) -> PyResult<NativeSource> {
        let targets = targets(classes, values)?;
        let features = x.shape()[1];
        let x = x
            .as_slice()
            .map_err(|_| PyValueError::new_err("x must be C-contiguous float32"))?;
        Dataset::new(x.to_vec(), features, targets)
            .map(wrap)
            .map_err(to_py)
    }

    /// This source's inputs with the targets `classes` (indices `[rows]`)
    /// or `values` (`[rows, width]`), held in memory beside it.
    #[pyo3(signature = (classes, values))]
    fn with_targets(
        &self,
        classes: Option<PyReadonlyArray1<'_, u32>>,
        values: Option<PyReadonlyArray2<'_, f32>>,
    ) -> PyResult<NativeSource> {
        let targets = targets(classes, values)?;
        WithTargets::new(self.source.clone(), targets).map(wrap)
    }

    /// Rows in the table.
    #[getter]
    fn rows(&self) -> usize {
        self.source.rows()
    }

    /// Inputs a row.
    #[getter]
    fn features(&self) -> usize {
        self.source.features()
    }

    /// Target columns (1 for class labels, 0 for inputs only).
    #[getter]
    fn target_width(&self) -> usize {
        self.source.target_width()
    }

    /// The table in words (its file).
    #[getter]
    fn name(&self) -> String {
        self.source.name()
    }

    /// Rows `start..end` held: `(x, classes, values)`, float32 inputs
    /// `[rows, features]` and class indices or target values (the other
    /// `None`; both for inputs only). Reads with the GIL released.
    fn read<'py>(&self, py: Python<'py>, start: usize, end: usize) -> PyResult<HeldRows<'py>> {
        guard(|| {
            let (rows, features, width) = (
                end.saturating_sub(start),
                self.features(),
                self.target_width(),
            );
            if end > self.rows() {
                return Err(PyValueError::new_err(format!(
                    "rows {start}..{end} of a table of {} rows",
                    self.rows()
                )));
            }
            let source = self.source.clone();
            let chunk = py.detach(move || {
                let mut chunk = Chunk::default();
                source.read(start..end, &mut chunk).map(|_| chunk)
            });
            let chunk = chunk.map_err(to_py)?;
            let x = PyArray1::from_vec(py, chunk.x).reshape([rows, features])?;
            let (classes, values) = match (self.source.classes(), width) {
                (_, 0) => (None, None),
                (true, _) => (Some(PyArray1::from_vec(py, chunk.labels).into_any()), None),
                (false, _) => (
                    None,
                    Some(
                        PyArray1::from_vec(py, chunk.values)
                            .reshape([rows, width])?
                            .into_any(),
                    ),
                ),
            };
            Ok((x.into_any(), classes, values))
        })
    }
}

/// Rows held: inputs, and class indices or target values (or neither).
type HeldRows<'py> = (
    Bound<'py, PyAny>,
    Option<Bound<'py, PyAny>>,
    Option<Bound<'py, PyAny>>,
);

/// Class indices or target values from Python, copied.
fn targets(
    classes: Option<PyReadonlyArray1<'_, u32>>,
    values: Option<PyReadonlyArray2<'_, f32>>,
) -> PyResult<Targets> {
    match (classes, values) {
        (Some(c), None) => Ok(Targets::Classes(c.as_slice()?.to_vec())),
        (None, Some(v)) => Ok(Targets::Values {
            values: v.as_slice()?.to_vec(),
            width: v.shape()[1],
        }),
        _ => Err(PyValueError::new_err("give either classes or values")),
    }
}

fn targets_rows(targets: &Targets) -> usize {
    match targets {
        Targets::Classes(c) => c.len(),
        Targets::Values { values, width } => values.len() / (*width).max(1),
    }
}

/// A source of inputs alone with targets held beside it (`fit(x, y)` with
/// `x` a file, a table or a memory map: `y` is small).
struct WithTargets {
    inputs: Arc<dyn RowSource>,
    targets: Targets,
}

impl WithTargets {
    fn new(inputs: Arc<dyn RowSource>, targets: Targets) -> PyResult<WithTargets> {
        let rows = targets_rows(&targets);
        if rows != inputs.rows() {
            return Err(PyValueError::new_err(format!(
                "y has {rows} rows, but {} has {}",
                inputs.name(),
                inputs.rows()
            )));
        }
        Ok(WithTargets { inputs, targets })
    }
}

impl RowSource for WithTargets {
    fn rows(&self) -> usize {
        self.inputs.rows()
    }
    fn features(&self) -> usize {
        self.inputs.features()
    }
    fn target_width(&self) -> usize {
        match &self.targets {
            Targets::Classes(_) => 1,
            Targets::Values { width, .. } => *width,
        }
    }
    fn classes(&self) -> bool {
        matches!(self.targets, Targets::Classes(_))
    }
    fn name(&self) -> String {
        self.inputs.name()
    }
    fn read(&self, rows: Range<usize>, out: &mut Chunk) -> retroprop::Result<()> {
        let mut inputs = Chunk::default();
        self.inputs.read(rows.clone(), &mut inputs)?;
        out.x.extend_from_slice(&inputs.x);
        self.read_targets(rows, out)
    }
    fn read_targets(&self, rows: Range<usize>, out: &mut Chunk) -> retroprop::Result<()> {
        match &self.targets {
            Targets::Classes(labels) => out.labels.extend_from_slice(&labels[rows]),
            Targets::Values { values, width } => {
                out.values
                    .extend_from_slice(&values[rows.start * width..rows.end * width]);
            }
        }
        Ok(())
    }
    fn fingerprint(&self) -> u64 {
        let mut hash = Fnv(self.inputs.fingerprint());
        match &self.targets {
            Targets::Classes(labels) => hash.add_words(labels),
            Targets::Values { values, .. } => hash.add_f32(values),
        }
        hash.0
    }
}

/// An element type NumPy stores numbers in.
#[derive(Clone, Copy, Debug)]
enum Element {
    Bool,
    Int(usize),
    Uint(usize),
    Float(usize),
}

impl Element {
    /// The value at `at` as `numpy.asarray(..., numpy.float32)` gives it:
    /// one rounding from the stored type to f32 (`as`, to nearest, as
    /// C's conversions NumPy uses round).
    ///
    /// # Safety
    /// `at` points at this element's bytes, readable.
    unsafe fn read(self, at: *const u8, swap: bool) -> f32 {
        let size = match self {
            Element::Bool => 1,
            Element::Int(n) | Element::Uint(n) | Element::Float(n) => n,
        };
        let mut word = [0u8; 8];
        // SAFETY: the caller's: `size` readable bytes at `at`.
        unsafe { std::ptr::copy_nonoverlapping(at, word.as_mut_ptr(), size) };
        if swap {
            word[..size].reverse();
        }
        let bits = u64::from_ne_bytes(word);
        // The bytes sit at the low end of the word on a little-endian
        // machine, at the high end on a big-endian one.
        let bits = if cfg!(target_endian = "big") {
            bits >> (64 - 8 * size)
        } else {
            bits
        };
        match self {
            Element::Bool => (bits != 0) as u8 as f32,
            Element::Int(1) => bits as u8 as i8 as f32,
            Element::Int(2) => bits as u16 as i16 as f32,
            Element::Int(4) => bits as u32 as i32 as f32,
            Element::Int(_) => bits as i64 as f32,
            Element::Uint(_) => bits as f32,
            Element::Float(2) => half::f16::from_bits(bits as u16).to_f32(),
            Element::Float(4) => f32::from_bits(bits as u32),
            Element::Float(_) => f64::from_bits(bits) as f32,
        }
    }
}

/// A NumPy array's values read where they lie, a range of rows at a time
/// (a memory map of a file larger than memory, of any numeric dtype,
/// byte order and strides); inputs only.
struct ArraySource {
    /// Keeps the array, and so its memory (the map), alive.
    _array: Py<PyAny>,
    data: *const u8,
    rows: usize,
    columns: usize,
    /// Bytes from a row to the next, and from a column to the next.
    strides: [isize; 2],
    element: Element,
    swap: bool,
    name: String,
}

// SAFETY: the values are only read, through `data`, which the array
// `_array` keeps alive; reads from several threads are reads.
unsafe impl Send for ArraySource {}
unsafe impl Sync for ArraySource {}

impl ArraySource {
    fn new(x: &Bound<'_, PyUntypedArray>, name: String) -> PyResult<ArraySource> {
        if x.ndim() != 2 {
            return Err(PyValueError::new_err(format!(
                "{name} must be 2-D [rows, features], got shape {:?}",
                x.shape()
            )));
        }
        let dtype = x.dtype();
        let size = dtype.itemsize();
        let element = match (dtype.kind(), size) {
            (b'b', 1) => Element::Bool,
            (b'i', 1 | 2 | 4 | 8) => Element::Int(size),
            (b'u', 1 | 2 | 4 | 8) => Element::Uint(size),
            (b'f', 2 | 4 | 8) => Element::Float(size),
            _ => {
                return Err(PyTypeError::new_err(format!(
                    "{name}: an array of dtype {} does not hold numbers retroprop reads (bool, integers, float16/32/64)",
                    dtype.str()?
                )));
            }
        };
        let swap = dtype.is_native_byteorder() == Some(false);
        let strides = x.strides();
        // Its first element's address, as NumPy's array interface gives it
        // (the ABI-stable way, under the limited API too).
        let data: usize = x
            .getattr("__array_interface__")?
            .get_item("data")?
            .get_item(0)?
            .extract()?;
        let data = data as *const u8;
        Ok(ArraySource {
            _array: x.as_any().clone().unbind(),
            data,
            rows: x.shape()[0],
            columns: x.shape()[1],
            strides: [strides[0], strides[1]],
            element,
            swap,
            name,
        })
    }
}

impl RowSource for ArraySource {
    fn rows(&self) -> usize {
        self.rows
    }
    fn features(&self) -> usize {
        self.columns
    }
    fn target_width(&self) -> usize {
        0
    }
    fn classes(&self) -> bool {
        false
    }
    fn name(&self) -> String {
        self.name.clone()
    }
    fn read(&self, rows: Range<usize>, out: &mut Chunk) -> retroprop::Result<()> {
        if rows.end > self.rows {
            return Err(Error::Config(format!(
                "{}: rows {rows:?} of {}",
                self.name, self.rows
            )));
        }
        out.x.reserve(rows.len() * self.columns);
        for row in rows {
            for column in 0..self.columns {
                let offset = row as isize * self.strides[0] + column as isize * self.strides[1];
                // SAFETY: row and column lie within the array's shape, so
                // the offset by its strides is one of its elements.
                let value = unsafe { self.element.read(self.data.offset(offset), self.swap) };
                if !value.is_finite() {
                    return Err(Error::Parse {
                        path: self.name.clone().into(),
                        message: format!(
                            "row {row}, column {column}: {value} is not a finite number (as float32)"
                        ),
                    });
                }
                out.x.push(value);
            }
        }
        Ok(())
    }
    fn fingerprint(&self) -> u64 {
        let mut hash = Fnv::default();
        hash.add_words(&[self.rows as u32, self.columns as u32]);
        hash.0
    }
}
