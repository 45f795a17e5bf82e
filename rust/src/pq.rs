//! COPY data moved between connections that psycopg opened, by libpq itself, without Python.
//!
//! Python owns every connection: it connects, starts the COPYs and reads their results. Here
//! only the data loop runs: a server sends one CopyData message per row, and a call per row is
//! cheap in C but not in Python. This is the crate's only unsafe code; what it rests on:
//!
//! - The functions are those of the very libpq that opened the connections (psycopg-binary
//!   ships its own): `LibPq::find_loaded` takes the one libpq already loaded into the process
//!   whose `PQlibVersion()` is psycopg's, and fails when none or several are. Every symbol is
//!   looked up as an `Option` of its C signature, so a missing one is an error, never a call
//!   through null. The library handle is never closed: the functions stay loaded for good.
//! - A `Conn` is a psycopg connection's `PGconn *` (`pgconn.pgconn_ptr`, which psycopg
//!   documents for calling libpq functions it does not wrap). py.rs makes one only from a
//!   `psycopg.Connection` of the loaded psycopg whose `lock` is held (the lock psycopg's own
//!   `Cursor.execute` takes, so no other thread runs a query on it meanwhile), and keeps the
//!   connection referenced until the call returns or the read-ahead thread has ended.
//!   `Connection.close()` takes no lock: not closing a connection while a COPY loop runs on it
//!   is the one rule left to the callers (`londiste_rs.libpq`).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::fmt;
use std::ptr::NonNull;
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

// The C signatures of libpq-fe.h.
type LibVersion = unsafe extern "C" fn() -> c_int;
type GetCopyData = unsafe extern "C" fn(*mut c_void, *mut *mut c_char, c_int) -> c_int;
type PutCopyData = unsafe extern "C" fn(*mut c_void, *const c_char, c_int) -> c_int;
type FreeMem = unsafe extern "C" fn(*mut c_void);
type SetNonblocking = unsafe extern "C" fn(*mut c_void, c_int) -> c_int;
type IsNonblocking = unsafe extern "C" fn(*const c_void) -> c_int;

/// Writes to the target are gathered into blocks of this size: fewer, larger sends.
const WRITE_BYTES: usize = 256 << 10;

/// libpq's COPY functions, from the libpq psycopg runs on.
#[derive(Clone)]
pub struct LibPq {
    get_copy_data: GetCopyData,
    put_copy_data: PutCopyData,
    freemem: FreeMem,
    set_nonblocking: SetNonblocking,
    is_nonblocking: IsNonblocking,
    path: String,
}

/// Why no libpq could be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindError {
    /// None or several of the loaded libpqs have the wanted version.
    NotOne {
        version: i32,
        loaded: Vec<String>,
        matching: usize,
    },
    /// The chosen libpq lacks a function.
    Missing {
        path: String,
        function: &'static str,
    },
}

impl fmt::Display for FindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FindError::NotOne {
                version,
                loaded,
                matching,
            } => {
                let loaded = if loaded.is_empty() {
                    "none".to_string()
                } else {
                    loaded.join(", ")
                };
                write!(
                    f,
                    "cannot tell which libpq psycopg uses ({matching} loaded libpqs are version \
                     {version}; loaded: {loaded}); use psycopg[binary] as installed with \
                     londiste-rs, on Linux"
                )
            }
            FindError::Missing { path, function } => {
                write!(
                    f,
                    "{path} has no {function}: not a libpq londiste-rs can use"
                )
            }
        }
    }
}

impl std::error::Error for FindError {}

/// How a relay or a read ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// The source's COPY failed: its result holds the server's error.
    Source,
    /// The target refused data: its connection's error message says why.
    Target,
}

/// A psycopg connection's `PGconn *` in the COPY OUT or COPY IN state; the module doc says
/// what vouches for it.
pub struct Conn(NonNull<c_void>);

// SAFETY: a PGconn may be used from any thread, one at a time (libpq's thread-safety rules);
// the connection's lock, held by the caller, keeps other threads off it.
unsafe impl Send for Conn {}

impl Conn {
    /// The value of psycopg's `pgconn_ptr`; None for 0, a closed connection. Only py.rs makes
    /// these, from a psycopg connection it checked (see the module doc).
    pub(crate) fn from_pgconn_ptr(ptr: usize) -> Option<Conn> {
        NonNull::new(ptr as *mut c_void).map(Conn)
    }

    fn ptr(&self) -> *mut c_void {
        self.0.as_ptr()
    }
}

/// Looks a function up in a loaded object, as its C signature; None for a null address.
macro_rules! lookup {
    ($handle:expr, $name:literal, $ty:ty) => {
        // SAFETY: `$ty` is the signature libpq-fe.h declares for `$name`, and a nullable
        // function pointer has the layout of `Option<fn>`: null becomes None.
        unsafe {
            std::mem::transmute::<*mut c_void, Option<$ty>>(libc::dlsym(
                $handle.0.as_ptr(),
                $name.as_ptr(),
            ))
        }
    };
}

/// A reference to a shared object that is already loaded; dropping it gives the reference
/// back (`dlclose`), `keep` never does.
#[derive(PartialEq, Eq)]
struct Loaded(NonNull<c_void>);

impl Loaded {
    fn get(path: &CStr) -> Option<Loaded> {
        // SAFETY: path is a valid C string; RTLD_NOLOAD never loads anything new.
        let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_NOW) };
        NonNull::new(handle).map(Loaded)
    }

    fn version(&self) -> Option<i32> {
        let f = lookup!(self, c"PQlibVersion", LibVersion)?;
        // SAFETY: PQlibVersion takes nothing and only returns a constant.
        Some(unsafe { f() })
    }

    fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        // SAFETY: the handle came from dlopen and is closed once.
        unsafe { libc::dlclose(self.0.as_ptr()) };
    }
}

/// Paths of the libpq files loaded into the process, in load order.
#[cfg(target_os = "linux")]
fn loaded_libpqs() -> Vec<CString> {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: `data` is the Vec passed below, `info` valid for this call; dlpi_name is
        // null or a C string.
        let (paths, name) = unsafe { (&mut *data.cast::<Vec<CString>>(), (*info).dlpi_name) };
        if !name.is_null() {
            // SAFETY: as above.
            let path = unsafe { CStr::from_ptr(name) };
            let file = path.to_bytes().rsplit(|&b| b == b'/').next().unwrap_or(&[]);
            let has = |part: &[u8]| file.windows(part.len()).any(|w| w == part);
            if file.starts_with(b"libpq") && has(b".so") {
                paths.push(path.to_owned());
            }
        }
        0
    }
    let mut paths: Vec<CString> = Vec::new();
    // SAFETY: `each` only touches `paths` through `data`, during this call.
    unsafe { libc::dl_iterate_phdr(Some(each), (&raw mut paths).cast()) };
    paths
}

#[cfg(not(target_os = "linux"))]
fn loaded_libpqs() -> Vec<CString> {
    Vec::new()
}

impl LibPq {
    /// The libpq already loaded into this process whose `PQlibVersion()` is `version`
    /// (psycopg's `pq.version()`). Fails unless exactly one is.
    pub fn find_loaded(version: i32) -> Result<LibPq, FindError> {
        let paths = loaded_libpqs();
        let mut matching: Vec<(Loaded, &CStr)> = Vec::new();
        for path in &paths {
            let Some(lib) = Loaded::get(path) else {
                continue;
            };
            // the same object under a second name counts once
            if lib.version() == Some(version) && !matching.iter().any(|(m, _)| *m == lib) {
                matching.push((lib, path));
            }
        }
        if matching.len() != 1 {
            return Err(FindError::NotOne {
                version,
                loaded: paths
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect(),
                matching: matching.len(),
            });
        }
        let (lib, path) = matching.remove(0);
        let path = path.to_string_lossy().into_owned();
        let missing = |function| FindError::Missing {
            path: path.clone(),
            function,
        };
        let found = LibPq {
            get_copy_data: lookup!(lib, c"PQgetCopyData", GetCopyData)
                .ok_or_else(|| missing("PQgetCopyData"))?,
            put_copy_data: lookup!(lib, c"PQputCopyData", PutCopyData)
                .ok_or_else(|| missing("PQputCopyData"))?,
            freemem: lookup!(lib, c"PQfreemem", FreeMem).ok_or_else(|| missing("PQfreemem"))?,
            set_nonblocking: lookup!(lib, c"PQsetnonblocking", SetNonblocking)
                .ok_or_else(|| missing("PQsetnonblocking"))?,
            is_nonblocking: lookup!(lib, c"PQisnonblocking", IsNonblocking)
                .ok_or_else(|| missing("PQisnonblocking"))?,
            path: path.clone(),
        };
        // the functions above must never be unloaded
        lib.keep();
        Ok(found)
    }

    /// The file the functions come from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Reads the source's COPY rows, appending them to `out`, until `out` holds at least
    /// `limit` bytes (`Ok(false)`) or the COPY ended (`Ok(true)`). Waits for the server.
    pub fn read(&self, src: &Conn, out: &mut Vec<u8>, limit: usize) -> Result<bool, Failed> {
        while out.len() < limit {
            if !self.next_row(src, |row| out.extend_from_slice(row))? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Copies the source's COPY OUT rows into the target's COPY IN until the source's COPY
    /// ends; returns the bytes moved. The target is switched to blocking writes for the
    /// loop, so libpq's buffer never holds more than a block.
    pub fn relay(&self, src: &Conn, dst: &Conn) -> Result<u64, Failed> {
        let _blocking = Blocking::new(self, dst);
        let mut block: Vec<u8> = Vec::with_capacity(WRITE_BYTES + (64 << 10));
        let mut moved = 0u64;
        loop {
            let ended = self.read(src, &mut block, WRITE_BYTES)?;
            self.write(dst, &block)?;
            moved += block.len() as u64;
            block.clear();
            if ended {
                return Ok(moved);
            }
        }
    }

    /// One row handed to `take`: `Ok(true)`; the COPY's end: `Ok(false)`.
    fn next_row(&self, src: &Conn, take: impl FnOnce(&[u8])) -> Result<bool, Failed> {
        let mut buf: *mut c_char = std::ptr::null_mut();
        // SAFETY: src is a live PGconn (see Conn); async = 0 waits for data.
        let n = unsafe { (self.get_copy_data)(src.ptr(), &mut buf, 0) };
        if n > 0 {
            // SAFETY: libpq returned a buffer of n bytes, ours until PQfreemem.
            let row = unsafe { std::slice::from_raw_parts(buf as *const u8, n as usize) };
            take(row);
            // SAFETY: buf was allocated by libpq and is freed once.
            unsafe { (self.freemem)(buf as *mut c_void) };
            Ok(true)
        } else if n == -1 {
            Ok(false)
        } else {
            Err(Failed::Source)
        }
    }

    fn write(&self, dst: &Conn, data: &[u8]) -> Result<(), Failed> {
        for part in data.chunks(c_int::MAX as usize) {
            // SAFETY: dst is a live PGconn in COPY IN; part is a valid slice.
            let r = unsafe {
                (self.put_copy_data)(
                    dst.ptr(),
                    part.as_ptr() as *const c_char,
                    part.len() as c_int,
                )
            };
            if r != 1 {
                return Err(Failed::Target);
            }
        }
        Ok(())
    }
}

/// The data of a COPY OUT, read ahead by a thread of its own in chunks of at least `chunk`
/// bytes (the last one smaller), while the caller works on the previous ones. At most
/// `depth` chunks wait, so memory stays bounded however long the stream.
pub struct Reader {
    chunks: Option<Receiver<Vec<u8>>>,
    thread: Option<JoinHandle<Result<(), Failed>>>,
    /// What keeps the connection open (the psycopg object): let go only once the thread ended
    /// (`Drop` joins it before the fields drop).
    _owner: Box<dyn Send>,
}

impl Reader {
    /// Takes `src` over until `close` returns: nothing else may use it meanwhile. `owner` is
    /// held until then.
    pub fn start(
        lib: LibPq,
        src: Conn,
        owner: Box<dyn Send>,
        chunk: usize,
        depth: usize,
    ) -> Reader {
        let (tx, rx) = sync_channel::<Vec<u8>>(depth);
        let thread = std::thread::spawn(move || {
            loop {
                let mut block = Vec::with_capacity(chunk + (64 << 10));
                let ended = lib.read(&src, &mut block, chunk)?;
                // an Err: the receiver is gone (`close`), stop reading
                if !block.is_empty() && tx.send(block).is_err() {
                    return Ok(());
                }
                if ended {
                    return Ok(());
                }
            }
        });
        Reader {
            chunks: Some(rx),
            thread: Some(thread),
            _owner: owner,
        }
    }

    /// The next chunk, waiting for it; None once the stream ended (or failed: see `close`).
    pub fn next_chunk(&mut self) -> Option<Vec<u8>> {
        self.chunks.as_ref()?.recv().ok()
    }

    /// Stops reading and waits for the thread: at once when the COPY ended; otherwise the
    /// caller must first make the server end it (cancel), or this waits for its end. Err:
    /// the source failed (its result holds the error).
    pub fn close(&mut self) -> Result<(), Failed> {
        self.chunks = None;
        match self.thread.take() {
            Some(t) => t.join().unwrap_or(Err(Failed::Source)),
            None => Ok(()),
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Blocking writes on a connection for as long as it lives, then its old mode back.
struct Blocking<'a> {
    lib: &'a LibPq,
    conn: &'a Conn,
    was_nonblocking: bool,
}

impl<'a> Blocking<'a> {
    fn new(lib: &'a LibPq, conn: &'a Conn) -> Self {
        // SAFETY: conn is a live PGconn (see Conn).
        let was_nonblocking = unsafe { (lib.is_nonblocking)(conn.ptr()) } == 1;
        if was_nonblocking {
            // SAFETY: as above.
            unsafe { (lib.set_nonblocking)(conn.ptr(), 0) };
        }
        Blocking {
            lib,
            conn,
            was_nonblocking,
        }
    }
}

impl Drop for Blocking<'_> {
    fn drop(&mut self) {
        if self.was_nonblocking {
            // SAFETY: the connection outlives this guard (it borrows it).
            unsafe { (self.lib.set_nonblocking)(self.conn.ptr(), 1) };
        }
    }
}
