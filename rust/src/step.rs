//! Steps: what the apply runs, in order. Each step is one binary COPY stream of a single table,
//! kind and client encoding, built by copying already-encoded fields.

use crate::pgcopy::write::{CopyWriter, EncodeError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepKind {
    /// Payload: binary COPY of the key columns of the rows to delete.
    Delete,
    /// Payload: binary COPY of the table's `out_cols` of rows that may or may not exist yet
    /// (exact mode).
    Upsert,
    /// Coalesced mode: rows whose key the stream shows existing on the subscriber when the
    /// step runs (first seen as an update, or as a delete then re-inserted).
    Update,
    /// Coalesced mode: rows whose key the stream shows absent when the step runs (first seen
    /// as an insert, or as the new key of a key change).
    Insert,
    /// Empty payload.
    Truncate,
}

impl StepKind {
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
}

impl Step {
    pub fn truncate(table: usize) -> Step {
        Step {
            kind: StepKind::Truncate,
            table,
            payload: Vec::new(),
            rows: 0,
            encoding: 0,
        }
    }
}

/// Accumulates the rows of one step.
pub struct StepBuilder {
    kind: StepKind,
    table: usize,
    encoding: EncodingId,
    nfields: u16,
    writer: CopyWriter,
}

impl StepBuilder {
    pub fn new(kind: StepKind, table: usize, encoding: EncodingId, nfields: u16) -> Self {
        StepBuilder {
            kind,
            table,
            encoding,
            nfields,
            // Small to start: exact mode may cut many short steps; long ones grow by doubling.
            writer: CopyWriter::with_capacity(256),
        }
    }

    /// Whether rows of (kind, table, encoding) belong in this step.
    pub fn matches(&self, kind: StepKind, table: usize, encoding: EncodingId) -> bool {
        self.kind == kind && self.table == table && self.encoding == encoding
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
            kind: self.kind,
            table: self.table,
            payload: self.writer.finish()?,
            rows,
            encoding: self.encoding,
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

    pub fn push(
        &mut self,
        kind: StepKind,
        table: usize,
        encoding: EncodingId,
        nfields: u16,
        fields: &[u8],
    ) -> Result<(), EncodeError> {
        let fits = self
            .current
            .as_ref()
            .is_some_and(|b| b.matches(kind, table, encoding) && b.bytes() < self.chunk_bytes);
        if !fits {
            self.close()?;
        }
        self.current
            .get_or_insert_with(|| StepBuilder::new(kind, table, encoding, nfields))
            .push(fields)
    }

    pub fn close(&mut self) -> Result<(), EncodeError> {
        if let Some(b) = self.current.take() {
            self.out.push(b.finish()?);
        }
        Ok(())
    }
}
