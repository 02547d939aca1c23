//! Numbers read from a data file to what trains. The Parquet and NumPy
//! readers take each value to f64 first (an integer of any width, a float
//! of any width, a boolean as 0 or 1) and then to f32 here, with the
//! checks and the arithmetic of the CSV reader (`Dataset::from_csv_reader`
//! in data.rs, which parses digits to f64 and rounds once to f32), so that
//! the same table in any format gives the same bits (tests/formats.rs).
//! An integer beyond 2^53 rounds to the nearest f64 as its digits do, and
//! one beyond 2^24 then to the nearest f32.

/// `value` as an input or target: finite and within f32's range, rounded
/// once to f32; otherwise what is wrong with it, in words.
pub(crate) fn number(value: f64) -> Result<f32, String> {
    if !value.is_finite() {
        return Err(format!("{value} is not a finite number"));
    }
    // A value past f32's range would become infinite and be reported later
    // without its place in the file.
    if value.abs() > f32::MAX as f64 {
        return Err(format!(
            "{value} is beyond the range of 32-bit floats (±{:e})",
            f32::MAX
        ));
    }
    Ok(value as f32)
}

/// `value` as a class label: a whole number from 0 to u32::MAX.
pub(crate) fn label(value: f64) -> Result<u32, String> {
    if value >= 0.0 && value.fract() == 0.0 && value <= u32::MAX as f64 {
        Ok(value as u32)
    } else {
        Err(format!("class label {value} is not a non-negative integer"))
    }
}
