//! The `londiste_rs._native` module: the only place that knows PyO3.

use std::collections::HashMap;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use crate::decoder::{self, DecodeError, TableSpec};
use crate::pgcopy::write::{CopyWriter, EncodeError};
use crate::pq;
use crate::snapshot::Snapshot;
use crate::typemap::{Kind, TypeInfo, TypeMap};

impl From<EncodeError> for PyErr {
    fn from(e: EncodeError) -> PyErr {
        PyValueError::new_err(e.to_string())
    }
}

impl From<DecodeError> for PyErr {
    fn from(e: DecodeError) -> PyErr {
        PyValueError::new_err(e.to_string())
    }
}

/// Work on less than this runs without releasing the GIL: re-taking it can cost a whole switch
/// interval when other threads run, far more than parsing a small chunk.
const DETACH_BYTES: usize = 64 << 10;

/// Decodes a batch's events (binary COPY of ev_id, ev_txid, ev_type, ev_extra1, ev_data,
/// ev_extra2, ev_extra4) into apply steps; see docs/internals.md section 4.
#[pyclass(name = "BatchDecoder", module = "londiste_rs._native")]
struct PyBatchDecoder {
    inner: decoder::BatchDecoder,
}

#[pymethods]
impl PyBatchDecoder {
    #[new]
    #[pyo3(signature = (chunk_bytes = 64 << 20, exact_order = false))]
    fn new(chunk_bytes: usize, exact_order: bool) -> PyResult<Self> {
        if chunk_bytes == 0 {
            return Err(PyValueError::new_err("chunk_bytes must be positive"));
        }
        Ok(PyBatchDecoder {
            inner: decoder::BatchDecoder::new(chunk_bytes, exact_order),
        })
    }

    #[pyo3(signature = (name, ncols, key_cols, out_cols, walk_cols = Vec::new(), skip_snapshot = None))]
    fn add_table(
        &mut self,
        name: String,
        ncols: usize,
        key_cols: Vec<usize>,
        out_cols: Vec<usize>,
        walk_cols: Vec<usize>,
        skip_snapshot: Option<(u64, u64, Vec<u64>)>,
    ) -> PyResult<()> {
        self.inner.add_table(TableSpec {
            name,
            ncols,
            key_cols,
            out_cols,
            walk_cols,
            skip_snapshot: skip_snapshot.map(|(xmin, xmax, xip)| Snapshot::new(xmin, xmax, xip)),
        })?;
        Ok(())
    }

    /// `{src_oid: (dst_oid, kind, inner_src_oid)}`; replaces any earlier map.
    fn set_type_map(&mut self, map: HashMap<u32, (u32, String, Option<u32>)>) -> PyResult<()> {
        let mut types = std::collections::HashMap::with_capacity(map.len());
        for (src, (dst, kind, inner)) in map {
            let kind = Kind::parse(&kind).ok_or_else(|| {
                PyValueError::new_err(format!(
                    "type {src}: unknown kind {kind:?} (expected array, composite, range, \
                     multirange, domain or scalar)"
                ))
            })?;
            let inner = inner.unwrap_or(0);
            types.insert(src, TypeInfo { dst, kind, inner });
        }
        self.inner.set_type_map(TypeMap::new(types));
        Ok(())
    }

    /// Feeds the next chunk of the stream (bytes, or any buffer such as a memoryview).
    fn feed(&mut self, py: Python<'_>, chunk: &Bound<'_, PyAny>) -> PyResult<()> {
        let copied;
        let data = match chunk.cast::<PyBytes>() {
            Ok(bytes) => bytes.as_bytes(),
            Err(_) => {
                // memoryview, bytearray...: one copy (reading a buffer in place needs unsafe).
                copied = PyBuffer::<u8>::get(chunk)?.to_vec(py)?;
                &copied[..]
            }
        };
        let inner = &mut self.inner;
        if data.len() < DETACH_BYTES {
            inner.feed(data)?;
        } else {
            py.detach(|| inner.feed(data))?;
        }
        Ok(())
    }

    /// End of the stream: refuses input that stopped before its trailer.
    fn finish(&mut self) -> PyResult<()> {
        Ok(self.inner.finish()?)
    }

    /// Memory held by coalesced rows and undrained steps.
    fn pending_bytes(&self) -> usize {
        self.inner.pending_bytes()
    }

    /// The steps for everything fed so far, in apply order:
    /// `(kind, table, payload, rows, encoding)`.
    fn drain<'py>(&mut self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let inner = &mut self.inner;
        let steps = if inner.pending_bytes() < DETACH_BYTES {
            inner.drain()?
        } else {
            py.detach(|| inner.drain())?
        };
        steps
            .iter()
            .map(|s| {
                let encoding = inner
                    .encoding_name(s.encoding)
                    .map(|e| String::from_utf8_lossy(e).into_owned());
                (
                    s.kind.as_str(),
                    inner.table_name(s.table),
                    PyBytes::new(py, &s.payload),
                    s.rows,
                    encoding,
                )
                    .into_pyobject(py)
            })
            .collect()
    }

    /// Non-data events seen since the last call: `(ev_id, ev_type, extra1, data)`.
    #[allow(clippy::type_complexity)]
    fn other_events<'py>(
        &mut self,
        py: Python<'py>,
    ) -> Vec<(i64, String, Option<String>, Option<Bound<'py, PyBytes>>)> {
        self.inner
            .take_other_events()
            .into_iter()
            .map(|e| {
                let data = e.data.map(|d| PyBytes::new(py, &d));
                (e.ev_id, e.ev_type, e.extra1, data)
            })
            .collect()
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.inner.stats().items() {
            d.set_item(k, v)?;
        }
        Ok(d)
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

/// libpq's COPY data loop on psycopg's connections (`crate::pq`); built by
/// `londiste_rs.libpq` from the addresses of `LIBPQ_FUNCTIONS` in the libpq psycopg uses.
#[pyclass(name = "LibPq", module = "londiste_rs._native", frozen)]
struct PyLibPq {
    inner: pq::LibPq,
}

#[pymethods]
impl PyLibPq {
    #[new]
    fn new(addresses: [usize; 5]) -> Self {
        // SAFETY: the Python side (londiste_rs.libpq) passes the addresses of these functions
        // in the libpq that psycopg loaded, and nothing else builds this class.
        #[allow(unsafe_code)]
        let inner = unsafe { pq::LibPq::new(addresses) };
        PyLibPq { inner }
    }

    /// Moves the rows of the COPY OUT running on `src` into the COPY IN running on `dst`
    /// (both `pgconn_ptr`s) until the source's COPY ends, without the GIL. Returns the bytes
    /// moved and None, or 0 and which side failed: "source" or "target".
    fn relay(&self, py: Python<'_>, src: usize, dst: usize) -> (u64, Option<String>) {
        // SAFETY: the caller owns both live connections and does not use them meanwhile.
        #[allow(unsafe_code)]
        let (src, dst) = unsafe { (pq::Conn::from_ptr(src), pq::Conn::from_ptr(dst)) };
        let lib = self.inner;
        match py.detach(move || lib.relay(src, dst)) {
            Ok(moved) => (moved, None),
            Err(side) => (0, Some(side.to_string())),
        }
    }

    /// Starts reading the COPY OUT running on `src` (a `pgconn_ptr`) in a thread of its own,
    /// in chunks of at least `chunk` bytes, at most `depth` of them waiting. The connection
    /// is the reader's until its `close()` returned.
    #[pyo3(signature = (src, chunk, depth = 2))]
    fn reader(&self, src: usize, chunk: usize, depth: usize) -> PyCopyReader {
        // SAFETY: the caller owns the live connection and leaves it to the reader.
        #[allow(unsafe_code)]
        let src = unsafe { pq::Conn::from_ptr(src) };
        PyCopyReader {
            inner: std::sync::Mutex::new(pq::Reader::start(self.inner, src, chunk.max(1), depth)),
        }
    }
}

/// A COPY OUT's data read ahead in Rust (`pq::Reader`); iterate for its chunks, then `close`.
#[pyclass(name = "CopyReader", module = "londiste_rs._native")]
struct PyCopyReader {
    // pyclasses must be Sync; one thread at a time uses a reader anyway
    inner: std::sync::Mutex<pq::Reader>,
}

#[pymethods]
impl PyCopyReader {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        let chunk = py.detach(|| self.lock().next_chunk())?;
        Some(PyBytes::new(py, &chunk))
    }

    /// Stops reading, waiting for the thread (cancel the query first to stop a running COPY):
    /// None, or "source" when the source's COPY failed.
    fn close(&self, py: Python<'_>) -> Option<String> {
        py.detach(|| self.lock().close())
            .err()
            .map(|side| side.to_string())
    }
}

impl PyCopyReader {
    fn lock(&self) -> std::sync::MutexGuard<'_, pq::Reader> {
        // a panic while holding it cannot leave the reader half-updated: take it anyway
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(encode_copy, m)?)?;
    m.add_function(wrap_pyfunction!(sql_files, m)?)?;
    m.add_class::<PyBatchDecoder>()?;
    m.add_class::<PyLibPq>()?;
    m.add_class::<PyCopyReader>()?;
    m.add("LIBPQ_FUNCTIONS", pq::FUNCTIONS.to_vec())?;
    Ok(())
}
