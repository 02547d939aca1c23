//! Data sets from NumPy's files: an `.npz` archive (`np.savez`,
//! `np.savez_compressed`) holding arrays `x` (`[rows, features]`) and `y`
//! (`[rows]` or `[rows, targets]`), or one `.npy` array whose last columns
//! are the targets, as a CSV file's are. Any numeric dtype (booleans,
//! integers of 1 to 8 bytes, float16, float32, float64), either byte
//! order, C or Fortran order; each value goes to f64 and then to f32 as
//! every reader's does (`io::values`). npyz reads the arrays (it
//! reports a file's dtype before reading, so one reader takes every
//! dtype); the zip crate opens the archive.
//!
//! Rows and columns in errors count from 0, as NumPy indexes them.

use super::read_file;
use super::values::{label, number};
use crate::data::{Dataset, Targets};
use crate::error::{Error, Result};
use crate::stream::{Chunk, RowSource};
use npyz::{DType, NpyFile, Order, TypeChar};
use std::io::Read;
use std::ops::Range;
use std::path::Path;

/// One array, its values as f64 in row-major (C) order.
struct Array {
    /// How errors name it: `array x` in an archive, `the array` alone.
    name: String,
    shape: Vec<usize>,
    values: Vec<f64>,
}

impl Array {
    /// Rows and columns: a 1-D array is one column.
    fn matrix(&self, path: &Path) -> Result<(usize, usize)> {
        match self.shape[..] {
            [rows] => Ok((rows, 1)),
            [_, 0] => Err(parse(path, format!("{} has no columns", self.name))),
            [rows, columns] => Ok((rows, columns)),
            _ => Err(parse(
                path,
                format!(
                    "{} has shape {:?}, expected [rows] or [rows, columns]",
                    self.name, self.shape
                ),
            )),
        }
    }
}

fn parse(path: &Path, message: String) -> Error {
    Error::Parse {
        path: path.to_path_buf(),
        message,
    }
}

/// Refuses a header that is not a plain array's before npyz parses it:
/// its Python-literal parser took 28 s (unoptimised) on a 151-byte header
/// of nested braces that the fuzzer found. A plain array's header is one
/// dict of a dtype string, a boolean and a tuple of numbers, nested two
/// deep; a structured dtype (lists of tuples), which is refused anyway,
/// goes deeper.
fn check_header(bytes: &[u8]) -> std::result::Result<(), String> {
    let (length, start): (usize, usize) = match bytes {
        [0x93, b'N', b'U', b'M', b'P', b'Y', 1, _, a, b, ..] => {
            (usize::from(u16::from_le_bytes([*a, *b])), 10)
        }
        [0x93, b'N', b'U', b'M', b'P', b'Y', 2 | 3, _, a, b, c, d, ..] => {
            let length = u32::from_le_bytes([*a, *b, *c, *d]);
            (usize::try_from(length).unwrap_or(usize::MAX), 12)
        }
        _ => return Err("not a NumPy array (no .npy magic string and version)".into()),
    };
    let header = bytes
        .get(start..start.saturating_add(length))
        .ok_or("the header runs past the end of the file")?;
    let mut depth = 0usize;
    for &byte in header {
        match byte {
            b'{' | b'(' | b'[' => depth += 1,
            b'}' | b')' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > 2 {
            return Err(
                "the header is not a plain array's (nested more than two deep: a structured dtype?)"
                    .into(),
            );
        }
    }
    Ok(())
}

/// Reads one `.npy` array's bytes.
fn parse_array(bytes: &[u8], name: String, path: &Path) -> Result<Array> {
    let fail = |message: String| parse(path, format!("{name}: {message}"));
    check_header(bytes).map_err(fail)?;
    let file = NpyFile::new(bytes).map_err(|e| fail(format!("not a NumPy array ({e})")))?;
    let header = file.header().clone();
    let data = file.into_inner();
    let DType::Plain(type_str) = header.dtype() else {
        return Err(fail(format!(
            "structured dtype {}, expected numbers",
            header.dtype().descr()
        )));
    };
    let shape = header
        .shape()
        .iter()
        .map(|&s| usize::try_from(s))
        .collect::<std::result::Result<Vec<usize>, _>>()
        .map_err(|_| fail(format!("shape {:?} is too large", header.shape())))?;
    // Checked before reading: a header may claim more values than the
    // file holds, and the reader would allocate for all of them.
    let needed = type_str
        .num_bytes()
        .and_then(|item| item.checked_mul(usize::try_from(header.len()).ok()?));
    if needed.is_none_or(|needed| needed > data.len()) {
        return Err(fail(format!(
            "shape {:?} of {type_str} needs more bytes than the file's {}",
            header.shape(),
            data.len()
        )));
    }
    let file = NpyFile::with_header(header.clone(), data);
    let read = |e: std::io::Error| fail(format!("cannot read the values: {e}"));
    macro_rules! values {
        ($t:ty, $to_f64:expr) => {
            file.into_vec::<$t>()
                .map_err(read)?
                .into_iter()
                .map($to_f64)
                .collect::<Vec<f64>>()
        };
    }
    let values = match (type_str.type_char(), type_str.size_field()) {
        (TypeChar::Bool, 1) => values!(bool, |v| v as u8 as f64),
        (TypeChar::Int, 1) => values!(i8, f64::from),
        (TypeChar::Int, 2) => values!(i16, f64::from),
        (TypeChar::Int, 4) => values!(i32, f64::from),
        // Rounded to the nearest f64, as the same digits in a CSV file are.
        (TypeChar::Int, 8) => values!(i64, |v| v as f64),
        (TypeChar::Uint, 1) => values!(u8, f64::from),
        (TypeChar::Uint, 2) => values!(u16, f64::from),
        (TypeChar::Uint, 4) => values!(u32, f64::from),
        (TypeChar::Uint, 8) => values!(u64, |v| v as f64),
        (TypeChar::Float, 2) => values!(npyz::half::f16, |v| v.to_f64()),
        (TypeChar::Float, 4) => values!(f32, f64::from),
        (TypeChar::Float, 8) => values!(f64, |v| v),
        _ => {
            return Err(fail(format!(
                "dtype {type_str} is not a number type (expected bool, int8 to int64, uint8 to uint64, float16, float32 or float64)"
            )));
        }
    };
    let values = match (header.order(), &shape[..]) {
        (Order::Fortran, &[rows, columns]) if rows > 1 && columns > 1 => {
            // Column-major: value (r, c) is at c × rows + r.
            let mut c_order = Vec::with_capacity(values.len());
            for r in 0..rows {
                c_order.extend((0..columns).map(|c| values[c * rows + r]));
            }
            c_order
        }
        _ => values,
    };
    Ok(Array {
        name,
        shape,
        values,
    })
}

/// Columns `first..first + width` of an array.
struct Part<'a> {
    array: &'a Array,
    first: usize,
    width: usize,
}

impl Part<'_> {
    /// The part's values, row by row, each through `convert`; an error
    /// names the array, row and column.
    fn values<T>(
        &self,
        path: &Path,
        convert: impl Fn(f64) -> std::result::Result<T, String>,
    ) -> Result<Vec<T>> {
        let (_, columns) = self.array.matrix(path)?;
        let mut out = Vec::with_capacity(self.array.values.len() / columns * self.width);
        for (r, row) in self.array.values.chunks_exact(columns).enumerate() {
            let part = &row[self.first..self.first + self.width];
            for (c, &value) in (self.first..).zip(part) {
                out.push(convert(value).map_err(|message| {
                    parse(
                        path,
                        format!("{}, row {r}, column {c}: {message}", self.array.name),
                    )
                })?);
            }
        }
        Ok(out)
    }
}

/// A data set from inputs `x` and targets `y`, with the same rows.
fn labelled(x: Part, y: Part, classes: bool, path: &Path) -> Result<Dataset> {
    let (rows, _) = x.array.matrix(path)?;
    let (y_rows, _) = y.array.matrix(path)?;
    if y_rows != rows {
        return Err(parse(
            path,
            format!(
                "{} has {y_rows} rows, {} has {rows}",
                y.array.name, x.array.name
            ),
        ));
    }
    if rows == 0 {
        return Err(parse(path, "no data rows".into()));
    }
    let inputs = x.values(path, number)?;
    let targets = if classes {
        if y.width != 1 {
            return Err(parse(
                path,
                format!(
                    "class labels come from one column, but {} has {} target columns",
                    y.array.name, y.width
                ),
            ));
        }
        Targets::Classes(y.values(path, label)?)
    } else {
        Targets::Values {
            values: y.values(path, number)?,
            width: y.width,
        }
    };
    Dataset::new(inputs, x.width, targets)
}

/// Reads one entry of an `.npz` archive (`name.npy`).
fn npz_array(bytes: &[u8], name: &str, path: &Path) -> Result<Option<Array>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| parse(path, format!("not an .npz archive ({e})")))?;
    let mut entry = match archive.by_name(&format!("{name}.npy")) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(parse(path, format!("array {name}: {e}"))),
    };
    let mut contents = Vec::new();
    entry
        .read_to_end(&mut contents)
        .map_err(|e| parse(path, format!("array {name}: cannot unpack it ({e})")))?;
    parse_array(&contents, format!("array {name}"), path).map(Some)
}

/// The names of an archive's arrays, for an error that lists them.
fn npz_names(bytes: &[u8]) -> String {
    let names: Vec<String> = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map(|archive| {
            archive
                .file_names()
                .filter_map(|n| n.ok())
                .map(|n| n.trim_end_matches(".npy").to_string())
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn required(bytes: &[u8], name: &str, path: &Path) -> Result<Array> {
    npz_array(bytes, name, path)?.ok_or_else(|| {
        parse(
            path,
            format!(
                "no array {name} (expected x [rows, features] and y [rows] or [rows, targets]; the archive holds: {})",
                npz_names(bytes)
            ),
        )
    })
}

impl Dataset {
    /// Reads arrays `x` (`[rows, features]`) and `y` (`[rows]` or
    /// `[rows, targets]`) from an `.npz` archive, as `np.savez(path, x=x,
    /// y=y)` writes it. With `classes`, `y` holds class indices 0, 1, 2, …
    /// Any numeric dtype, either byte order, C or Fortran order. Errors
    /// name the file, the array, its row and column (from 0).
    pub fn from_npz(path: impl AsRef<Path>, classes: bool) -> Result<Dataset> {
        let path = path.as_ref();
        Dataset::from_npz_bytes(&read_file(path)?, path, classes)
    }

    /// [`from_npz`](Self::from_npz) on a file's bytes; `path` names it in
    /// errors.
    pub fn from_npz_bytes(bytes: &[u8], path: &Path, classes: bool) -> Result<Dataset> {
        let x = required(bytes, "x", path)?;
        let y = required(bytes, "y", path)?;
        let (_, features) = x.matrix(path)?;
        let (_, width) = y.matrix(path)?;
        let x = Part {
            array: &x,
            first: 0,
            width: features,
        };
        let y = Part {
            array: &y,
            first: 0,
            width,
        };
        labelled(x, y, classes, path)
    }

    /// Reads one `.npy` array (`[rows, columns]`) whose last
    /// `target_columns` columns are targets, as [`from_csv`](Self::from_csv)
    /// reads a CSV file. Any numeric dtype, either byte order, C or
    /// Fortran order.
    pub fn from_npy(
        path: impl AsRef<Path>,
        target_columns: usize,
        classes: bool,
    ) -> Result<Dataset> {
        let path = path.as_ref();
        Dataset::from_npy_bytes(&read_file(path)?, path, target_columns, classes)
    }

    /// [`from_npy`](Self::from_npy) on a file's bytes; `path` names it in
    /// errors.
    pub fn from_npy_bytes(
        bytes: &[u8],
        path: &Path,
        target_columns: usize,
        classes: bool,
    ) -> Result<Dataset> {
        let array = parse_array(bytes, "the array".into(), path)?;
        let [_, columns] = array.shape[..] else {
            return Err(parse(
                path,
                format!(
                    "the array has shape {:?}, expected [rows, columns] with the targets last",
                    array.shape
                ),
            ));
        };
        if target_columns == 0 || columns <= target_columns {
            return Err(parse(
                path,
                format!(
                    "the array has {columns} columns, but {target_columns} are targets: at least one target and one feature column are needed"
                ),
            ));
        }
        let features = columns - target_columns;
        let x = Part {
            array: &array,
            first: 0,
            width: features,
        };
        let y = Part {
            array: &array,
            first: features,
            width: target_columns,
        };
        labelled(x, y, classes, path)
    }
}

/// The inputs of a NumPy file to predict on, row-major, and their
/// columns: array `x` of an `.npz` archive (`y`, if there, is not read), or
/// the whole `.npy` array. Each value must be a finite number in f32's
/// range; errors name the array, row and column.
pub fn read_inputs(path: &Path) -> Result<(Vec<f32>, usize)> {
    let bytes = read_file(path)?;
    let npz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npz"));
    let array = if npz {
        required(&bytes, "x", path)?
    } else {
        parse_array(&bytes, "the array".into(), path)?
    };
    let (rows, columns) = array.matrix(path)?;
    if rows == 0 {
        return Err(parse(
            path,
            format!("{} has shape {:?}: no values", array.name, array.shape),
        ));
    }
    let x = Part {
        array: &array,
        first: 0,
        width: columns,
    }
    .values(path, number)?;
    Ok((x, columns))
}

/// One value of an array as its dtype stores it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Element {
    Bool,
    Int(usize),
    Uint(usize),
    Float(usize),
}

impl Element {
    /// The element of a numeric dtype, or what is wrong with it.
    fn of(type_str: &npyz::TypeStr) -> std::result::Result<Element, String> {
        match (type_str.type_char(), type_str.size_field()) {
            (TypeChar::Bool, 1) => Ok(Element::Bool),
            (TypeChar::Int, n @ (1 | 2 | 4 | 8)) => Ok(Element::Int(n as usize)),
            (TypeChar::Uint, n @ (1 | 2 | 4 | 8)) => Ok(Element::Uint(n as usize)),
            (TypeChar::Float, n @ (2 | 4 | 8)) => Ok(Element::Float(n as usize)),
            _ => Err(format!(
                "dtype {type_str} is not a number type (expected bool, int8 to int64, uint8 to uint64, float16, float32 or float64)"
            )),
        }
    }

    fn bytes(self) -> usize {
        match self {
            Element::Bool => 1,
            Element::Int(n) | Element::Uint(n) | Element::Float(n) => n,
        }
    }

    /// The value stored in `bytes` (this element's size), as f64 the way
    /// [`parse_array`] takes each dtype there: integers by `as`.
    fn value(self, bytes: &[u8], big_endian: bool) -> f64 {
        let mut word = [0u8; 8];
        let n = bytes.len();
        word[..n].copy_from_slice(bytes);
        if big_endian {
            word[..n].reverse();
        }
        let bits = u64::from_le_bytes(word);
        match self {
            Element::Bool => (bits != 0) as u8 as f64,
            Element::Int(1) => f64::from(bits as u8 as i8),
            Element::Int(2) => f64::from(bits as u16 as i16),
            Element::Int(4) => f64::from(bits as u32 as i32),
            Element::Int(_) => bits as i64 as f64,
            Element::Uint(8) => bits as f64,
            Element::Uint(_) => bits as f64,
            Element::Float(2) => npyz::half::f16::from_bits(bits as u16).to_f64(),
            Element::Float(4) => f64::from(f32::from_bits(bits as u32)),
            Element::Float(_) => f64::from_bits(bits),
        }
    }
}

/// An `.npy` array read a range of rows at a time ([`RowSource`]): what
/// `--stream` trains, validates and predicts on. The header is read once;
/// each read opens the file and reads the rows' bytes where they lie (a
/// C-order array's rows one after another, a Fortran-order array's
/// columns a read each), 8192 rows at a time, never the whole array, and
/// takes each value as [`Dataset::from_npy`] does (the same bits, the
/// same errors naming the row and column). An `.npz` archive is read in
/// memory only: its arrays are compressed, or stored in a zip entry.
pub struct NpySource {
    path: std::path::PathBuf,
    /// Where the values start in the file.
    data_start: u64,
    rows: usize,
    columns: usize,
    fortran: bool,
    element: Element,
    big_endian: bool,
    features: usize,
    /// Target columns (after the features), 0 for inputs only.
    width: usize,
    classes: bool,
    fingerprint: u64,
}

/// Rows a read takes at once.
const BLOCK_ROWS: usize = 8192;

impl NpySource {
    /// The array at `path` (`[rows, columns]`) whose last `target_columns`
    /// columns are targets (class labels with `classes`), as
    /// [`Dataset::from_npy`] reads it. Reads the header only.
    pub fn open(path: &Path, target_columns: usize, classes: bool) -> Result<NpySource> {
        let mut source = NpySource::header(path)?;
        if source.shape.len() != 2 {
            return Err(parse(
                path,
                format!(
                    "the array has shape {:?}, expected [rows, columns] with the targets last",
                    source.shape
                ),
            ));
        }
        let columns = source.source.columns;
        if target_columns == 0 || columns <= target_columns {
            return Err(parse(
                path,
                format!(
                    "the array has {columns} columns, but {target_columns} are targets: at least one target and one feature column are needed"
                ),
            ));
        }
        if classes && target_columns != 1 {
            return Err(parse(
                path,
                format!(
                    "class labels come from one column, but the array has {target_columns} target columns"
                ),
            ));
        }
        source.source.features = columns - target_columns;
        source.source.width = target_columns;
        source.source.classes = classes;
        if source.source.rows == 0 {
            return Err(parse(path, "no data rows".into()));
        }
        Ok(source.source)
    }

    /// The first `inputs` columns of the array at `path` (`[rows]` or
    /// `[rows, columns]`), to predict on: the columns `retroprop
    /// predict` reads of an `.npy` file.
    pub fn inputs(path: &Path, inputs: usize) -> Result<NpySource> {
        let header = NpySource::header(path)?;
        let mut source = header.source;
        if source.rows == 0 {
            return Err(parse(
                path,
                format!("the array has shape {:?}: no values", header.shape),
            ));
        }
        if source.columns < inputs {
            return Err(parse(
                path,
                format!(
                    "rows have {} columns, but the model takes {inputs} inputs",
                    source.columns
                ),
            ));
        }
        source.features = inputs;
        Ok(source)
    }

    /// The array's header, checked: a numeric dtype, one or two
    /// dimensions, and the file as long as they say.
    fn header(path: &Path) -> Result<Header> {
        use std::io::{Read, Seek};
        let fail = |message: String| parse(path, format!("the array: {message}"));
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let file_length = file.metadata().map_err(io)?.len();
        // The magic string, version and header length, then the header.
        let mut head = vec![0u8; 12.min(file_length as usize)];
        file.read_exact(&mut head).map_err(io)?;
        let (length, start) = match head[..] {
            [0x93, b'N', b'U', b'M', b'P', b'Y', 1, _, a, b, ..] => {
                (u16::from_le_bytes([a, b]) as u64, 10)
            }
            [0x93, b'N', b'U', b'M', b'P', b'Y', 2 | 3, _, a, b, c, d] => {
                (u32::from_le_bytes([a, b, c, d]) as u64, 12)
            }
            _ => {
                return Err(fail(
                    "not a NumPy array (no .npy magic string and version)".into(),
                ));
            }
        };
        let data_start = start + length;
        if data_start > file_length {
            return Err(fail("the header runs past the end of the file".into()));
        }
        let mut bytes = vec![0u8; data_start as usize];
        file.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
        file.read_exact(&mut bytes).map_err(io)?;
        check_header(&bytes).map_err(fail)?;
        let npy = NpyFile::new(&bytes[..]).map_err(|e| fail(format!("not a NumPy array ({e})")))?;
        let header = npy.header().clone();
        let DType::Plain(type_str) = header.dtype() else {
            return Err(fail(format!(
                "structured dtype {}, expected numbers",
                header.dtype().descr()
            )));
        };
        let element = Element::of(&type_str).map_err(fail)?;
        let shape = header
            .shape()
            .iter()
            .map(|&s| usize::try_from(s))
            .collect::<std::result::Result<Vec<usize>, _>>()
            .map_err(|_| fail(format!("shape {:?} is too large", header.shape())))?;
        let (rows, columns) = match shape[..] {
            [rows] => (rows, 1),
            [_, 0] => return Err(fail("the array has no columns".into())),
            [rows, columns] => (rows, columns),
            _ => {
                return Err(fail(format!(
                    "shape {shape:?}, expected [rows] or [rows, columns]"
                )));
            }
        };
        let needed = rows
            .checked_mul(columns)
            .and_then(|n| n.checked_mul(element.bytes()));
        if needed.is_none_or(|n| n as u64 > file_length - data_start) {
            return Err(fail(format!(
                "shape {shape:?} of {type_str} needs more bytes than the file's {}",
                file_length - data_start
            )));
        }
        let mut hash = crate::stream::Fnv::default();
        hash.add_words(&[file_length as u32, (file_length >> 32) as u32]);
        hash.add_bytes(&bytes);
        Ok(Header {
            shape,
            source: NpySource {
                path: path.to_path_buf(),
                data_start,
                rows,
                columns,
                fortran: header.order() == Order::Fortran && rows > 1 && columns > 1,
                element,
                big_endian: type_str.endianness() == npyz::Endianness::Big,
                features: columns,
                width: 0,
                classes: false,
                fingerprint: hash.0,
            },
        })
    }

    /// Reads the values of `columns` of rows `rows` (at most
    /// [`BLOCK_ROWS`]) into `bytes`, row-major with `columns.len()` values
    /// a row, each as stored.
    fn read_block(
        &self,
        rows: Range<usize>,
        columns: Range<usize>,
        bytes: &mut Vec<u8>,
    ) -> Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let item = self.element.bytes();
        let mut file = std::fs::File::open(&self.path).map_err(io)?;
        let mut read_at = |offset: usize, out: &mut [u8]| -> Result<()> {
            file.seek(SeekFrom::Start(self.data_start + offset as u64))
                .map_err(io)?;
            file.read_exact(out).map_err(io)
        };
        let width = columns.len();
        bytes.resize(rows.len() * width * item, 0);
        if !self.fortran {
            // Whole rows, one after another; the columns wanted kept.
            let mut whole = vec![0u8; rows.len() * self.columns * item];
            read_at(rows.start * self.columns * item, &mut whole)?;
            for (r, row) in whole.chunks_exact(self.columns * item).enumerate() {
                bytes[r * width * item..(r + 1) * width * item]
                    .copy_from_slice(&row[columns.start * item..columns.end * item]);
            }
            return Ok(());
        }
        // Column-major: value (r, c) is at c × rows + r.
        let mut column = vec![0u8; rows.len() * item];
        for (k, c) in columns.enumerate() {
            read_at((c * self.rows + rows.start) * item, &mut column)?;
            for (r, value) in column.chunks_exact(item).enumerate() {
                let at = (r * width + k) * item;
                bytes[at..at + item].copy_from_slice(value);
            }
        }
        Ok(())
    }

    /// Rows `rows` of `columns`, a block at a time, each value as f64 to
    /// `put(row of the file, column, value)`; its error names the place.
    fn each_value(
        &self,
        rows: Range<usize>,
        columns: Range<usize>,
        mut put: impl FnMut(usize, usize, f64) -> std::result::Result<(), String>,
    ) -> Result<()> {
        let item = self.element.bytes();
        let width = columns.len();
        let mut bytes = Vec::new();
        let mut start = rows.start;
        while start < rows.end {
            let block = start..(start + BLOCK_ROWS).min(rows.end);
            self.read_block(block.clone(), columns.clone(), &mut bytes)?;
            for (i, value) in bytes.chunks_exact(item).enumerate() {
                let (r, c) = (block.start + i / width, columns.start + i % width);
                put(r, c, self.element.value(value, self.big_endian)).map_err(|message| {
                    parse(
                        &self.path,
                        format!("the array, row {r}, column {c}: {message}"),
                    )
                })?;
            }
            start = block.end;
        }
        Ok(())
    }
}

/// An array's header as [`NpySource::header`] reads it.
struct Header {
    shape: Vec<usize>,
    source: NpySource,
}

impl RowSource for NpySource {
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
        let (f, w, classes) = (self.features, self.width, self.classes);
        out.x.reserve(rows.len() * f);
        self.each_value(rows, 0..f + w, |_, c, value| {
            if c < f {
                out.x.push(number(value)?);
            } else if classes {
                out.labels.push(label(value)?);
            } else {
                out.values.push(number(value)?);
            }
            Ok(())
        })
    }

    fn read_targets(&self, rows: Range<usize>, out: &mut Chunk) -> Result<()> {
        let (f, w, classes) = (self.features, self.width, self.classes);
        self.each_value(rows, f..f + w, |_, _, value| {
            match classes {
                true => out.labels.push(label(value)?),
                false => out.values.push(number(value)?),
            }
            Ok(())
        })
    }
}
