//! Data sets from NumPy's files: an `.npz` archive (`np.savez`,
//! `np.savez_compressed`) holding arrays `x` (`[rows, features]`) and `y`
//! (`[rows]` or `[rows, targets]`), or one `.npy` array whose last columns
//! are the targets, as a CSV file's are. Any numeric dtype (booleans,
//! integers of 1 to 8 bytes, float16, float32, float64), either byte
//! order, C or Fortran order; each value goes to f64 and then to f32 as
//! every reader's does ([`super::values`]). npyz reads the arrays (it
//! reports a file's dtype before reading, so one reader takes every
//! dtype); the zip crate opens the archive.
//!
//! Rows and columns in errors count from 0, as NumPy indexes them.

use super::read_file;
use super::values::{label, number};
use crate::data::{Dataset, Targets};
use crate::error::{Error, Result};
use npyz::{DType, NpyFile, Order, TypeChar};
use std::io::Read;
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
