//! Exact mode: steps follow event order. A step is a maximal run of events of one table, kind
//! and encoding in which no key repeats, so applying each step as one set-based statement gives
//! the same result as applying its events one by one (unique values moving between rows
//! included, provided the apply keeps the step's row order).

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::pgcopy::write::EncodeError;
use crate::step::{EncodingId, Step, StepBuilder, StepKind};

#[derive(Default)]
pub struct ExactRuns {
    current: Option<StepBuilder>,
    /// Keys of the current run, back to back; `keys` indexes them by (offset, length).
    key_arena: Vec<u8>,
    keys: HashTable<(usize, usize)>,
    hasher: DefaultHashBuilder,
}

impl ExactRuns {
    pub fn new() -> Self {
        Self::default()
    }

    /// Memory held by the open run.
    pub fn pending_bytes(&self) -> usize {
        self.current.as_ref().map_or(0, StepBuilder::bytes)
            + self.key_arena.len()
            + self.keys.len() * std::mem::size_of::<(usize, usize)>()
    }

    /// Adds one row (`fields`: `nfields` length-prefixed fields) of `key` to the run, first
    /// closing the run into `out` when the row cannot join it.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        kind: StepKind,
        table: usize,
        encoding: EncodingId,
        key: &[u8],
        nfields: u16,
        fields: &[u8],
        chunk_bytes: usize,
        out: &mut Vec<Step>,
    ) -> Result<(), EncodeError> {
        let hash = self.hasher.hash_one(key);
        let joins = match &self.current {
            Some(run) => {
                let arena = &self.key_arena;
                run.matches(kind, table, encoding)
                    && run.bytes() < chunk_bytes
                    && self
                        .keys
                        .find(hash, |&(o, l)| &arena[o..][..l] == key)
                        .is_none()
            }
            None => false,
        };
        if !joins {
            self.close(out)?;
            self.current = Some(StepBuilder::new(kind, table, encoding, nfields));
        }
        let ExactRuns {
            key_arena,
            keys,
            hasher,
            ..
        } = self;
        let entry = (key_arena.len(), key.len());
        key_arena.extend_from_slice(key);
        keys.insert_unique(hash, entry, |&(o, l)| hasher.hash_one(&key_arena[o..][..l]));
        self.current
            .as_mut()
            .expect("run opened above")
            .push(fields)
    }

    /// Ends the open run (if any) as a step in `out`.
    pub fn close(&mut self, out: &mut Vec<Step>) -> Result<(), EncodeError> {
        self.key_arena.clear();
        self.keys.clear();
        if let Some(run) = self.current.take() {
            out.push(run.finish()?);
        }
        Ok(())
    }
}
