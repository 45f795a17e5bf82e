//! Steps: what the apply runs, in order. Each step is one binary COPY stream of a single table,
//! kind and client encoding, built by copying already-encoded fields.

use crate::pgcopy::write::{CopyWriter, EncodeError};

/// The values are those of Python's `_native.StepKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum StepKind {
    /// Payload: binary COPY of the key columns of the rows to delete.
    Delete = 1,
    /// Payload: binary COPY of the table's `out_cols` of rows that may or may not exist yet
    /// (exact mode).
    Upsert = 2,
    /// Coalesced mode: rows whose key the stream shows existing on the subscriber when the
    /// step runs (first seen as an update, or as a delete then re-inserted).
    Update,
    /// Coalesced mode: rows whose key the stream shows absent when the step runs (first seen
    /// as an insert, or as the new key of a key change).
    Insert = 4,
    /// Empty payload.
    Truncate = 5,
}

impl StepKind {
    pub const ALL: [StepKind; 5] = [
        StepKind::Delete,
        StepKind::Upsert,
        StepKind::Update,
        StepKind::Insert,
        StepKind::Truncate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Delete => "delete",
            StepKind::Upsert => "upsert",
            StepKind::Update => "update",
            StepKind::Insert => "insert",
            StepKind::Truncate => "truncate",
        }
    }
}

/// What the rows of one step share: a step holds rows of one kind, table and encoding only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunKey {
    pub kind: StepKind,
    /// Index of the table in `add_table` order.
    pub table: usize,
    pub encoding: EncodingId,
}

/// One row of a step: `nfields` length-prefixed fields back to back.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub nfields: u16,
    pub fields: &'a [u8],
}

impl<'a> Row<'a> {
    pub fn new(nfields: u16, fields: &'a [u8]) -> Self {
        Row { nfields, fields }
    }
}

/// Interned client encoding of a step's text: 0 = the database encoding, `n` = the decoder's
/// `n-1`th encoding name.
pub type EncodingId = u16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub kind: StepKind,
    /// Index of the table in `add_table` order.
    pub table: usize,
    pub payload: Vec<u8>,
    pub rows: u64,
    pub encoding: EncodingId,
    /// The next step goes on with this one's rows (same kind, table and encoding, keys
    /// distinct from these): a step cut only for its size, which the apply may stage together
    /// with the next before merging them with one statement.
    pub more: bool,
}

impl Step {
    pub fn truncate(table: usize) -> Step {
        Step {
            kind: StepKind::Truncate,
            table,
            payload: Vec::new(),
            rows: 0,
            encoding: 0,
            more: false,
        }
    }
}

/// Accumulates the rows of one step.
pub struct StepBuilder {
    run: RunKey,
    nfields: u16,
    writer: CopyWriter,
}

impl StepBuilder {
    pub fn new(run: RunKey, nfields: u16) -> Self {
        StepBuilder {
            run,
            nfields,
            // Small to start: exact mode may cut many short steps; long ones grow by doubling.
            writer: CopyWriter::with_capacity(256),
        }
    }

    /// Whether rows of `run` belong in this step.
    pub fn matches(&self, run: RunKey) -> bool {
        self.run == run
    }

    /// Adds one row given as `nfields` length-prefixed fields back to back.
    pub fn push(&mut self, fields: &[u8]) -> Result<(), EncodeError> {
        self.writer.raw_row(self.nfields, fields)
    }

    pub fn bytes(&self) -> usize {
        self.writer.len()
    }

    pub fn rows(&self) -> u64 {
        self.writer.rows()
    }

    pub fn finish(self) -> Result<Step, EncodeError> {
        let rows = self.writer.rows();
        Ok(Step {
            kind: self.run.kind,
            table: self.run.table,
            payload: self.writer.finish()?,
            rows,
            encoding: self.run.encoding,
            more: false,
        })
    }
}

/// Writes rows into steps of at most about `chunk_bytes` each, appended to `out`.
pub struct StepSplitter<'a> {
    out: &'a mut Vec<Step>,
    chunk_bytes: usize,
    current: Option<StepBuilder>,
}

impl<'a> StepSplitter<'a> {
    pub fn new(out: &'a mut Vec<Step>, chunk_bytes: usize) -> Self {
        StepSplitter {
            out,
            chunk_bytes,
            current: None,
        }
    }

    /// Goes on with a step `into_current` left unfinished.
    pub fn resume(
        out: &'a mut Vec<Step>,
        chunk_bytes: usize,
        current: Option<StepBuilder>,
    ) -> Self {
        StepSplitter {
            out,
            chunk_bytes,
            current,
        }
    }

    /// Steps ended so far (in `out`).
    pub fn steps(&self) -> usize {
        self.out.len()
    }

    /// The step being written, unfinished (for `resume`).
    pub fn into_current(self) -> Option<StepBuilder> {
        self.current
    }

    pub fn push(&mut self, run: RunKey, row: Row<'_>) -> Result<(), EncodeError> {
        match &self.current {
            Some(b) if b.matches(run) && b.bytes() < self.chunk_bytes => {}
            Some(b) if b.matches(run) => {
                // cut for its size: the rows go on in the next step
                let b = self.current.take().expect("matched");
                let mut step = b.finish()?;
                step.more = true;
                self.out.push(step);
            }
            _ => self.close()?,
        }
        self.current
            .get_or_insert_with(|| StepBuilder::new(run, row.nfields))
            .push(row.fields)
    }

    pub fn close(&mut self) -> Result<(), EncodeError> {
        if let Some(b) = self.current.take() {
            self.out.push(b.finish()?);
        }
        Ok(())
    }
}
