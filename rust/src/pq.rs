//! COPY data moved between connections that psycopg opened, by libpq itself, without Python.
//!
//! Python owns every connection: it connects, starts the COPYs and reads their results. Here
//! only the data loop runs, on the `PGconn` pointers psycopg exposes (`pgconn_ptr`) and with
//! the functions of the very libpq that opened them (their addresses are looked up in Python,
//! `londiste_rs.libpq`): a server sends one CopyData message per row, and a call per row is
//! cheap in C but not in Python. This is the crate's only unsafe code.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void};
use std::fmt;
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

type GetCopyData = unsafe extern "C" fn(*mut c_void, *mut *mut c_char, c_int) -> c_int;
type PutCopyData = unsafe extern "C" fn(*mut c_void, *const c_char, c_int) -> c_int;
type FreeMem = unsafe extern "C" fn(*mut c_void);
type SetNonblocking = unsafe extern "C" fn(*mut c_void, c_int) -> c_int;
type IsNonblocking = unsafe extern "C" fn(*const c_void) -> c_int;

/// The names of the libpq functions used here, in the order `LibPq::new` takes them.
pub const FUNCTIONS: [&str; 5] = [
    "PQgetCopyData",
    "PQputCopyData",
    "PQfreemem",
    "PQsetnonblocking",
    "PQisnonblocking",
];

/// Writes to the target are gathered into blocks of this size: fewer, larger sends.
const WRITE_BYTES: usize = 256 << 10;

/// libpq's functions, by address.
#[derive(Clone, Copy)]
pub struct LibPq {
    get_copy_data: GetCopyData,
    put_copy_data: PutCopyData,
    freemem: FreeMem,
    set_nonblocking: SetNonblocking,
    is_nonblocking: IsNonblocking,
}

/// How a relay or a read ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// The source's COPY failed: its result holds the server's error.
    Source,
    /// The target refused data: its connection's error message says why.
    Target,
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Failed::Source => "source",
            Failed::Target => "target",
        })
    }
}

/// A `PGconn *` in the COPY OUT or COPY IN state. Only one thread uses it at a time: the
/// Python side does not touch the connection while a call here runs (`Send` for the reader
/// thread that takes it over).
#[derive(Clone, Copy)]
pub struct Conn(*mut c_void);

// SAFETY: a PGconn may be used from any thread, one at a time (libpq's thread-safety rules);
// the callers hand a connection over for the duration of a call.
unsafe impl Send for Conn {}

impl Conn {
    /// # Safety
    /// `ptr` is a live `PGconn *` opened by the libpq whose functions `LibPq` holds, and
    /// stays open and unused elsewhere while it is in use here.
    pub unsafe fn from_ptr(ptr: usize) -> Conn {
        Conn(ptr as *mut c_void)
    }
}

impl LibPq {
    /// # Safety
    /// `addresses` are the functions named by `FUNCTIONS`, in that order, of one libpq.
    pub unsafe fn new(addresses: [usize; 5]) -> LibPq {
        // SAFETY: the caller guarantees these are the functions with these signatures.
        unsafe {
            LibPq {
                get_copy_data: std::mem::transmute::<usize, GetCopyData>(addresses[0]),
                put_copy_data: std::mem::transmute::<usize, PutCopyData>(addresses[1]),
                freemem: std::mem::transmute::<usize, FreeMem>(addresses[2]),
                set_nonblocking: std::mem::transmute::<usize, SetNonblocking>(addresses[3]),
                is_nonblocking: std::mem::transmute::<usize, IsNonblocking>(addresses[4]),
            }
        }
    }

    /// Reads the source's COPY rows, appending them to `out`, until `out` holds at least
    /// `limit` bytes (`Ok(false)`) or the COPY ended (`Ok(true)`). Waits for the server.
    pub fn read(&self, src: Conn, out: &mut Vec<u8>, limit: usize) -> Result<bool, Failed> {
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
    pub fn relay(&self, src: Conn, dst: Conn) -> Result<u64, Failed> {
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
    fn next_row(&self, src: Conn, take: impl FnOnce(&[u8])) -> Result<bool, Failed> {
        let mut buf: *mut c_char = std::ptr::null_mut();
        // SAFETY: src is a live PGconn (Conn::from_ptr's contract); async = 0 waits for data.
        let n = unsafe { (self.get_copy_data)(src.0, &mut buf, 0) };
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

    fn write(&self, dst: Conn, data: &[u8]) -> Result<(), Failed> {
        for part in data.chunks(c_int::MAX as usize) {
            // SAFETY: dst is a live PGconn in COPY IN; part is a valid slice.
            let r = unsafe {
                (self.put_copy_data)(dst.0, part.as_ptr() as *const c_char, part.len() as c_int)
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
}

impl Reader {
    /// Takes `src` over until `close` returns: nothing else may use it meanwhile.
    pub fn start(lib: LibPq, src: Conn, chunk: usize, depth: usize) -> Reader {
        let (tx, rx) = sync_channel::<Vec<u8>>(depth);
        let thread = std::thread::spawn(move || {
            loop {
                let mut block = Vec::with_capacity(chunk + (64 << 10));
                let ended = lib.read(src, &mut block, chunk)?;
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
    conn: Conn,
    was_nonblocking: bool,
}

impl<'a> Blocking<'a> {
    fn new(lib: &'a LibPq, conn: Conn) -> Self {
        // SAFETY: conn is a live PGconn.
        let was_nonblocking = unsafe { (lib.is_nonblocking)(conn.0) } == 1;
        if was_nonblocking {
            // SAFETY: as above.
            unsafe { (lib.set_nonblocking)(conn.0, 0) };
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
            // SAFETY: the connection is still live (the caller's contract).
            unsafe { (self.lib.set_nonblocking)(self.conn.0, 1) };
        }
    }
}
