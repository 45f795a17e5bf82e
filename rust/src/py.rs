//! The `londiste_rs._native` module: the only place that knows PyO3.

use std::collections::HashMap;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::marker::Ungil;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict};

use crate::decoder::{self, Barrier, DecodeError, TableSpec};
use crate::pgcopy::write::{CopyWriter, EncodeError};
use crate::pq;
use crate::snapshot::Snapshot;
use crate::step::StepKind;
use crate::typemap::{Kind, TypeInfo, TypeMap};

/// Errors raised as the package's own classes (python/londiste_rs/errors.py) and psycopg's.
mod errors {
    pyo3::import_exception!(londiste_rs.errors, LondisteError);
    pyo3::import_exception!(londiste_rs.errors, DecodeError);
    pyo3::import_exception!(londiste_rs.errors, CopySourceFailed);
    pyo3::import_exception!(londiste_rs.errors, CopyTargetFailed);
    pyo3::import_exception!(psycopg, OperationalError);
}

impl From<EncodeError> for PyErr {
    fn from(e: EncodeError) -> PyErr {
        PyValueError::new_err(e.to_string())
    }
}

impl From<DecodeError> for PyErr {
    fn from(e: DecodeError) -> PyErr {
        match e {
            // a wrong call, not a bad stream
            DecodeError::Usage(msg) => PyValueError::new_err(msg),
            DecodeError::Event { ev_id, .. } => {
                errors::DecodeError::new_err((e.to_string(), ev_id))
            }
            _ => errors::DecodeError::new_err((e.to_string(), None::<i64>)),
        }
    }
}

/// Work on less than this runs without releasing the GIL: re-taking it can cost a whole switch
/// interval when other threads run, far more than parsing a small chunk.
const DETACH_BYTES: usize = 64 << 10;

/// Runs `f`, the work on `bytes` bytes, without the GIL when it is large enough to be worth it.
fn run_detached<T: Ungil>(py: Python<'_>, bytes: usize, f: impl Ungil + FnOnce() -> T) -> T {
    if bytes < DETACH_BYTES {
        f()
    } else {
        py.detach(f)
    }
}

/// `_native.StepKind`, an `enum.IntEnum` made from `step::StepKind` (names and values), and its
/// members in `StepKind::ALL` order.
struct StepKinds {
    class: Py<PyAny>,
    members: Vec<Py<PyAny>>,
}

impl StepKinds {
    fn member(&self, py: Python<'_>, kind: StepKind) -> Py<PyAny> {
        // ALL lists every kind: `members` has one for each
        let at = StepKind::ALL.iter().position(|&k| k == kind).unwrap_or(0);
        self.members[at].clone_ref(py)
    }
}

static STEP_KINDS: PyOnceLock<StepKinds> = PyOnceLock::new();

fn step_kinds(py: Python<'_>) -> PyResult<&'static StepKinds> {
    STEP_KINDS.get_or_try_init(py, || {
        let names: Vec<(String, u8)> = StepKind::ALL
            .iter()
            .map(|&k| (k.as_str().to_uppercase(), k as u8))
            .collect();
        let kwargs = PyDict::new(py);
        kwargs.set_item("module", "londiste_rs._native")?;
        let class = py
            .import("enum")?
            .getattr("IntEnum")?
            .call(("StepKind", names), Some(&kwargs))?;
        class.setattr(
            "__doc__",
            "What a `Step` does with its rows (docs/internals.md, §4).",
        )?;
        let members = StepKind::ALL
            .iter()
            .map(|&k| Ok(class.call1((k as u8,))?.unbind()))
            .collect::<PyResult<_>>()?;
        Ok(StepKinds {
            class: class.unbind(),
            members,
        })
    })
}

/// One apply step: the rows of one table, kind and client encoding as a binary COPY payload.
#[pyclass(name = "Step", module = "londiste_rs._native", frozen)]
struct PyStep {
    /// A `StepKind`.
    #[pyo3(get)]
    kind: Py<PyAny>,
    /// The table's name as given to `add_table`.
    #[pyo3(get)]
    table: String,
    /// Binary COPY of the key columns (DELETE), of `out_cols` (UPDATE, INSERT, UPSERT), or
    /// empty (TRUNCATE).
    #[pyo3(get)]
    payload: Py<PyBytes>,
    #[pyo3(get)]
    rows: u64,
    /// None, or the client encoding the payload's text is in.
    #[pyo3(get)]
    encoding: Option<String>,
    /// The next step goes on with these rows (same kind, table and encoding, other keys): it
    /// was cut for its size only, and may be staged with the next before one merge.
    #[pyo3(get)]
    more: bool,
}

#[pymethods]
impl PyStep {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Step({}, {:?}, rows={}, {} bytes, encoding={:?})",
            self.kind.bind(py).str()?,
            self.table,
            self.rows,
            self.payload.bind(py).as_bytes().len(),
            self.encoding
        ))
    }
}

/// A decoder's step for Python (its payload copied into a bytes object; the step is freed).
fn py_step(
    py: Python<'_>,
    kinds: &StepKinds,
    dec: &decoder::BatchDecoder,
    s: crate::step::Step,
) -> PyStep {
    PyStep {
        kind: kinds.member(py, s.kind),
        table: dec.table_name(s.table).to_owned(),
        payload: PyBytes::new(py, &s.payload).unbind(),
        rows: s.rows,
        encoding: dec
            .encoding_name(s.encoding)
            .map(|e| String::from_utf8_lossy(e).into_owned()),
        more: s.more,
    }
}

#[allow(clippy::too_many_arguments)]
fn table_spec(
    name: String,
    ncols: usize,
    key_cols: Vec<usize>,
    out_cols: Vec<usize>,
    walk_cols: Vec<usize>,
    skip_snapshot: Option<(u64, u64, Vec<u64>)>,
    shape: Option<String>,
    col_types: Vec<u32>,
    blocked: bool,
) -> TableSpec {
    TableSpec {
        name,
        ncols,
        key_cols,
        out_cols,
        walk_cols,
        skip_snapshot: skip_snapshot.map(|(xmin, xmax, xip)| Snapshot::new(xmin, xmax, xip)),
        shape: shape.map(String::into_bytes),
        col_types,
        blocked,
    }
}

/// Where a decoder stopped: after an event of a barrier type ("event"), or before a row event
/// its table's spec does not fit ("shape").
#[pyclass(name = "Barrier", module = "londiste_rs._native", frozen, get_all)]
struct PyBarrier {
    kind: &'static str,
    ev_id: i64,
    txid: i64,
    ev_type: String,
    table: Option<String>,
    shape: Option<String>,
    problem: Option<String>,
    extra1: Option<String>,
    extra2: Option<Py<PyBytes>>,
    data: Option<Py<PyBytes>>,
}

impl PyBarrier {
    fn new(py: Python<'_>, b: &Barrier) -> Self {
        let bytes = |v: &Option<Vec<u8>>| v.as_ref().map(|d| PyBytes::new(py, d).unbind());
        PyBarrier {
            kind: b.kind.as_str(),
            ev_id: b.ev_id,
            txid: b.txid,
            ev_type: b.ev_type.clone(),
            table: b.table.clone(),
            shape: b.shape.clone(),
            problem: b.problem.clone(),
            extra1: b.extra1.clone(),
            extra2: bytes(&b.extra2),
            data: bytes(&b.data),
        }
    }
}

#[pymethods]
impl PyBarrier {
    fn __repr__(&self) -> String {
        format!(
            "Barrier({}, ev_id={}, ev_type={:?}, table={:?})",
            self.kind, self.ev_id, self.ev_type, self.table
        )
    }
}

/// Decodes a batch's events (binary COPY of ev_id, ev_txid, ev_type, ev_extra1, ev_data,
/// ev_extra2, ev_extra4) into apply steps; see docs/internals.md section 4.
#[pyclass(name = "BatchDecoder", module = "londiste_rs._native")]
struct PyBatchDecoder {
    inner: decoder::BatchDecoder,
}

#[pymethods]
impl PyBatchDecoder {
    #[new]
    #[pyo3(signature = (
        chunk_bytes = 64 << 20, exact_order = false, barrier_types = Vec::new(),
        shape_barriers = false
    ))]
    fn new(
        chunk_bytes: usize,
        exact_order: bool,
        barrier_types: Vec<String>,
        shape_barriers: bool,
    ) -> PyResult<Self> {
        if chunk_bytes == 0 {
            return Err(PyValueError::new_err("chunk_bytes must be positive"));
        }
        let mut inner = decoder::BatchDecoder::new(chunk_bytes, exact_order);
        inner.set_barriers(barrier_types, shape_barriers);
        Ok(PyBatchDecoder { inner })
    }

    // Python's keyword arguments, one per TableSpec field
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (
        name, ncols, key_cols, out_cols, walk_cols = Vec::new(), skip_snapshot = None,
        shape = None, col_types = Vec::new(), blocked = false
    ))]
    fn add_table(
        &mut self,
        name: String,
        ncols: usize,
        key_cols: Vec<usize>,
        out_cols: Vec<usize>,
        walk_cols: Vec<usize>,
        skip_snapshot: Option<(u64, u64, Vec<u64>)>,
        shape: Option<String>,
        col_types: Vec<u32>,
        blocked: bool,
    ) -> PyResult<()> {
        let spec = table_spec(
            name,
            ncols,
            key_cols,
            out_cols,
            walk_cols,
            skip_snapshot,
            shape,
            col_types,
            blocked,
        );
        self.inner.add_table(spec)?;
        Ok(())
    }

    /// Another spec for a table added before (same arguments as add_table); what is pending
    /// is flushed into steps first.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (
        name, ncols, key_cols, out_cols, walk_cols = Vec::new(), skip_snapshot = None,
        shape = None, col_types = Vec::new(), blocked = false
    ))]
    fn replace_table(
        &mut self,
        name: String,
        ncols: usize,
        key_cols: Vec<usize>,
        out_cols: Vec<usize>,
        walk_cols: Vec<usize>,
        skip_snapshot: Option<(u64, u64, Vec<u64>)>,
        shape: Option<String>,
        col_types: Vec<u32>,
        blocked: bool,
    ) -> PyResult<()> {
        let spec = table_spec(
            name,
            ncols,
            key_cols,
            out_cols,
            walk_cols,
            skip_snapshot,
            shape,
            col_types,
            blocked,
        );
        self.inner.replace_table(spec)?;
        Ok(())
    }

    /// Where the decoder stopped (None: it did not).
    fn barrier(&self, py: Python<'_>) -> Option<PyBarrier> {
        self.inner.barrier().map(|b| PyBarrier::new(py, b))
    }

    /// Goes on after a barrier with the input kept (it may stop at the next one).
    fn resume(&mut self, py: Python<'_>) -> PyResult<()> {
        let inner = &mut self.inner;
        let carried = inner.pending_bytes();
        run_detached(py, carried, || inner.resume())?;
        Ok(())
    }

    /// The tables whose new keys may be inserted before the batch's other pending changes
    /// (no unique constraint but their key): memory then holds the existing keys' rows for
    /// longer, so they coalesce over more events. Replaces the previous list.
    fn early_inserts(&mut self, names: Vec<String>) -> PyResult<()> {
        Ok(self.inner.early_inserts(&names)?)
    }

    /// Row events whose ev_id is in one of these inclusive ranges are skipped, until called
    /// again (empty: none).
    fn set_skip_events(&mut self, ranges: Vec<(i64, i64)>) {
        self.inner.set_skip_events(ranges);
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
        run_detached(py, data.len(), || inner.feed(data))?;
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

    /// The steps for everything fed so far, in apply order.
    fn drain(&mut self, py: Python<'_>) -> PyResult<Vec<PyStep>> {
        let inner = &mut self.inner;
        let steps = run_detached(py, inner.pending_bytes(), || inner.drain())?;
        let kinds = step_kinds(py)?;
        // each step's bytes are freed here once copied to Python: not all held twice
        Ok(steps
            .into_iter()
            .map(|s| py_step(py, kinds, &self.inner, s))
            .collect())
    }

    /// The next of the steps `drain()` would give, or None: made one at a time, so that
    /// applying them holds the coalesced rows and one step, not every step.
    fn next_step(&mut self, py: Python<'_>) -> PyResult<Option<PyStep>> {
        let inner = &mut self.inner;
        let step = run_detached(py, inner.pending_bytes(), || inner.next_step())?;
        let kinds = step_kinds(py)?;
        Ok(step.map(|s| py_step(py, kinds, &self.inner, s)))
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

/// Encodes rows of Python values as one binary COPY stream (`_native._testing`).
///
/// `types` names each column's PostgreSQL type: bool, int2, int4, int8, float4, float8, text
/// (also varchar, json, name), bytea, jsonb, numeric (given as str, Decimal or int),
/// timestamp/timestamptz (microseconds since the Unix epoch), date (days since the Unix epoch),
/// uuid (16 bytes). None is NULL. For tests and tools only: the replication never builds
/// Python objects per row.
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

fn copy_failed(side: pq::Failed) -> PyErr {
    match side {
        pq::Failed::Source => errors::CopySourceFailed::new_err("the source's COPY failed"),
        pq::Failed::Target => {
            errors::CopyTargetFailed::new_err("the target refused the COPY's data")
        }
    }
}

/// The libpq psycopg runs on, found on first use.
static LIBPQ: PyOnceLock<pq::LibPq> = PyOnceLock::new();

fn libpq(py: Python<'_>) -> PyResult<&'static pq::LibPq> {
    LIBPQ.get_or_try_init(py, || {
        // importing psycopg loads its libpq, whatever its implementation
        let version: i32 = py
            .import("psycopg.pq")?
            .getattr("version")?
            .call0()?
            .extract()?;
        pq::LibPq::find_loaded(version).map_err(|e| errors::LondisteError::new_err(e.to_string()))
    })
}

/// The `PGconn *` of `conn`, which must be a `psycopg.Connection` (of the psycopg whose libpq
/// `libpq` found) whose `lock` is held: the lock its own queries take, so no other thread
/// uses the connection while Rust does. The caller keeps `conn` referenced meanwhile.
fn held_pgconn(py: Python<'_>, conn: &Bound<'_, PyAny>) -> PyResult<pq::Conn> {
    let psycopg = py.import("psycopg")?;
    if !conn.is_instance(&psycopg.getattr("Connection")?)? {
        return Err(PyTypeError::new_err(format!(
            "expected a psycopg.Connection, not {}",
            conn.get_type().name()?
        )));
    }
    let pgconn = conn.getattr("pgconn")?;
    if !pgconn.is_instance(&psycopg.getattr("pq")?.getattr("PGconn")?)? {
        return Err(PyTypeError::new_err(
            "the connection's pgconn is not of psycopg's libpq implementation",
        ));
    }
    if !conn.getattr("lock")?.call_method0("locked")?.is_truthy()? {
        return Err(PyRuntimeError::new_err(
            "hold the connection's lock (`with conn.lock:`) while Rust uses it",
        ));
    }
    let ptr: Option<usize> = pgconn.getattr("pgconn_ptr")?.extract()?;
    pq::Conn::from_pgconn_ptr(ptr.unwrap_or(0))
        .ok_or_else(|| errors::OperationalError::new_err("the connection is closed"))
}

/// The path of the libpq the COPY loops call (psycopg's), found on first use.
#[pyfunction]
fn libpq_path(py: Python<'_>) -> PyResult<&'static str> {
    Ok(libpq(py)?.path())
}

/// Moves the rows of the COPY OUT running on `src` into the COPY IN running on `dst` until
/// the source's COPY ends, without the GIL; returns the bytes moved. Both are psycopg
/// connections whose `lock` the caller holds. A failed side raises CopySourceFailed or
/// CopyTargetFailed (the server's error is in that connection's result).
#[pyfunction]
fn relay(py: Python<'_>, src: &Bound<'_, PyAny>, dst: &Bound<'_, PyAny>) -> PyResult<u64> {
    if src.is(dst) {
        return Err(PyValueError::new_err("relay needs two connections"));
    }
    let lib = libpq(py)?;
    let (src, dst) = (held_pgconn(py, src)?, held_pgconn(py, dst)?);
    // the caller's references keep both connections alive until this returns
    py.detach(move || lib.relay(&src, &dst))
        .map_err(copy_failed)
}

/// A COPY OUT's data read ahead in Rust by a thread of its own (`pq::Reader`), in chunks of
/// at least `chunk` bytes, at most `depth` of them waiting. `conn` is a psycopg connection
/// whose `lock` the caller holds until `close()` returned; the reader keeps it referenced.
/// Iterate for the chunks, then `close`.
#[pyclass(name = "ReadAhead", module = "londiste_rs._native", frozen)]
struct PyReadAhead {
    // pyclasses must be Sync; one thread at a time uses a reader anyway
    inner: std::sync::Mutex<pq::Reader>,
}

#[pymethods]
impl PyReadAhead {
    #[new]
    #[pyo3(signature = (conn, chunk, depth = 2))]
    fn new(py: Python<'_>, conn: &Bound<'_, PyAny>, chunk: usize, depth: usize) -> PyResult<Self> {
        let lib = libpq(py)?.clone();
        let src = held_pgconn(py, conn)?;
        let owner: Box<dyn Send> = Box::new(conn.clone().unbind());
        let reader = pq::Reader::start(lib, src, owner, chunk.max(1), depth);
        Ok(PyReadAhead {
            inner: std::sync::Mutex::new(reader),
        })
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        let chunk = py.detach(|| self.lock().next_chunk())?;
        Some(PyBytes::new(py, &chunk))
    }

    /// Stops reading, waiting for the thread (cancel the query first to stop a running COPY);
    /// raises CopySourceFailed when the source's COPY failed.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.lock().close()).map_err(copy_failed)
    }
}

impl PyReadAhead {
    fn lock(&self) -> std::sync::MutexGuard<'_, pq::Reader> {
        // a panic while holding it cannot leave the reader half-updated: take it anyway
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(sql_files, m)?)?;
    m.add_class::<PyBatchDecoder>()?;
    m.add_function(wrap_pyfunction!(libpq_path, m)?)?;
    m.add_function(wrap_pyfunction!(relay, m)?)?;
    m.add_class::<PyReadAhead>()?;
    m.add_class::<PyStep>()?;
    m.add_class::<PyBarrier>()?;
    m.add("StepKind", step_kinds(m.py())?.class.bind(m.py()))?;
    add_testing(m)?;
    Ok(())
}

/// `_native._testing`: helpers for tests and tools, kept off the module the package uses.
fn add_testing(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let name = "londiste_rs._native._testing";
    let testing = PyModule::new(py, name)?;
    testing.add_function(wrap_pyfunction!(encode_copy, &testing)?)?;
    m.setattr("_testing", &testing)?; // not in __all__: no star-import
                                      // importable by its dotted name, like a submodule of a package
    py.import("sys")?
        .getattr("modules")?
        .set_item(name, &testing)?;
    Ok(())
}
