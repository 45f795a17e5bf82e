//! The `londiste_rs._native` module: the only place that knows PyO3.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::copy_binary::{CopyWriter, EncodeError};

impl From<EncodeError> for PyErr {
    fn from(e: EncodeError) -> PyErr {
        PyValueError::new_err(e.to_string())
    }
}

/// Encodes rows of Python values as one binary COPY stream.
///
/// `types` names each column's PostgreSQL type: bool, int2, int4, int8, float4, float8, text
/// (also varchar, json, name), bytea, jsonb, numeric (given as str, Decimal or int),
/// timestamp/timestamptz (microseconds since the Unix epoch), date (days since the Unix epoch),
/// uuid (16 bytes). None is NULL. Meant for tools and tests; the replication hot path never
/// builds Python objects per row.
#[pyfunction]
fn encode_copy<'py>(
    py: Python<'py>,
    rows: Vec<Vec<Bound<'py, PyAny>>>,
    types: Vec<String>,
) -> PyResult<Bound<'py, PyBytes>> {
    let nfields = u16::try_from(types.len())
        .map_err(|_| PyValueError::new_err("too many columns for one COPY row"))?;
    let mut w = CopyWriter::new();
    for (rowno, row) in rows.iter().enumerate() {
        if row.len() != types.len() {
            return Err(PyValueError::new_err(format!(
                "row {rowno} has {} values but {} types were given",
                row.len(),
                types.len()
            )));
        }
        w.begin_row(nfields)?;
        for (value, ty) in row.iter().zip(&types) {
            write_value(&mut w, value, ty)
                .map_err(|e| PyValueError::new_err(format!("row {rowno}, type {ty}: {e}")))?;
        }
    }
    let out = w.finish()?;
    Ok(PyBytes::new(py, &out))
}

fn write_value(w: &mut CopyWriter, value: &Bound<'_, PyAny>, ty: &str) -> PyResult<()> {
    if value.is_none() {
        w.null();
        return Ok(());
    }
    match ty {
        "bool" => w.bool(value.extract()?),
        "int2" => w.i16(value.extract()?),
        "int4" => w.i32(value.extract()?),
        "int8" => w.i64(value.extract()?),
        "float4" => w.f32(value.extract()?),
        "float8" => w.f64(value.extract()?),
        "text" | "varchar" | "json" | "name" => w.text(&value.extract::<String>()?)?,
        "bytea" => w.raw(&value.extract::<Vec<u8>>()?)?,
        "jsonb" => w.jsonb(&value.extract::<String>()?)?,
        "numeric" => w.numeric(&value.str()?.to_cow()?)?,
        "timestamp" | "timestamptz" => w.timestamp_unix_micros(value.extract()?),
        "date" => w.date_unix_days(value.extract()?),
        "uuid" => {
            let bytes: Vec<u8> = value.extract()?;
            let arr: [u8; 16] = bytes
                .try_into()
                .map_err(|_| PyValueError::new_err("uuid needs exactly 16 bytes"))?;
            w.uuid(&arr)
        }
        other => {
            return Err(PyValueError::new_err(format!(
                "unsupported type {other:?} for encode_copy"
            )))
        }
    }
    Ok(())
}

/// The embedded `sql/` files as (relative path, text), sorted by path.
#[pyfunction]
fn sql_files() -> Vec<(&'static str, &'static str)> {
    crate::sql_bundle::SQL_FILES.to_vec()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(encode_copy, m)?)?;
    m.add_function(wrap_pyfunction!(sql_files, m)?)?;
    Ok(())
}
