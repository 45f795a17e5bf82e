//! Exact mode: steps follow event order. A step is a maximal run of events of one table, kind
//! and encoding in which no key repeats, so applying each step as one set-based statement gives
//! the same result as applying its events one by one (unique values moving between rows
//! included, provided the apply keeps the step's row order).

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::pgcopy::write::EncodeError;
use crate::step::{Row, RunKey, Step, StepBuilder};

pub struct ExactRuns {
    /// A run is closed once its payload reaches this size.
    chunk_bytes: usize,
    current: Option<StepBuilder>,
    /// Keys of the current run, back to back; `keys` indexes them by (offset, length).
    key_arena: Vec<u8>,
    keys: HashTable<(usize, usize)>,
    hasher: DefaultHashBuilder,
}

impl ExactRuns {
    pub fn new(chunk_bytes: usize) -> Self {
        ExactRuns {
            chunk_bytes,
            current: None,
            key_arena: Vec::new(),
            keys: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    /// Memory held by the open run.
    pub fn pending_bytes(&self) -> usize {
        self.current.as_ref().map_or(0, StepBuilder::bytes)
            + self.key_arena.len()
            + self.keys.len() * std::mem::size_of::<(usize, usize)>()
    }

    /// Adds `row`, whose key is `key`, to the run, first closing the run into `out` when the
    /// row cannot join it.
    pub fn push(
        &mut self,
        run: RunKey,
        key: &[u8],
        row: Row<'_>,
        out: &mut Vec<Step>,
    ) -> Result<(), EncodeError> {
        let hash = self.hasher.hash_one(key);
        let joins = match &self.current {
            Some(current) => {
                let arena = &self.key_arena;
                current.matches(run)
                    && current.bytes() < self.chunk_bytes
                    && self
                        .keys
                        .find(hash, |&(o, l)| &arena[o..][..l] == key)
                        .is_none()
            }
            None => false,
        };
        if !joins {
            self.close(out)?;
            self.current = Some(StepBuilder::new(run, row.nfields));
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
            .push(row.fields)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::StepKind;
    use crate::test_support::{key_fields, row_fields, summary};

    fn upsert(table: usize) -> RunKey {
        RunKey {
            kind: StepKind::Upsert,
            table,
            encoding: 0,
        }
    }

    /// Upserts of (table, id) pushed in order through runs of at most `chunk_bytes`.
    fn runs(chunk_bytes: usize, rows: &[(RunKey, i32)]) -> Vec<(&'static str, usize, Vec<i32>)> {
        let mut ex = ExactRuns::new(chunk_bytes);
        let mut out = Vec::new();
        for &(run, id) in rows {
            let row = row_fields(id, "v");
            ex.push(run, &key_fields(id), Row::new(2, &row), &mut out)
                .unwrap();
        }
        ex.close(&mut out).unwrap();
        assert_eq!(ex.pending_bytes(), 0);
        summary(&out)
    }

    #[test]
    fn a_run_breaks_on_a_repeated_key_only() {
        let t = upsert(0);
        let got = runs(
            1 << 20,
            &[(t, 1), (t, 2), (t, 3), (t, 2), (t, 1), (t, 4), (t, 1)],
        );
        assert_eq!(
            got,
            vec![
                ("upsert", 0, vec![1, 2, 3]),
                ("upsert", 0, vec![2, 1, 4]),
                ("upsert", 0, vec![1]),
            ]
        );
    }

    #[test]
    fn a_run_breaks_on_another_table_kind_or_encoding() {
        let delete = RunKey {
            kind: StepKind::Delete,
            ..upsert(0)
        };
        let latin = RunKey {
            encoding: 1,
            ..upsert(0)
        };
        let rows = [
            (upsert(0), 1),
            (upsert(1), 2),
            (upsert(0), 3),
            (delete, 4),
            (latin, 5),
            (latin, 6),
        ];
        assert_eq!(
            runs(1 << 20, &rows),
            vec![
                ("upsert", 0, vec![1]),
                ("upsert", 1, vec![2]),
                ("upsert", 0, vec![3]),
                ("delete", 0, vec![4]),
                ("upsert", 0, vec![5, 6]),
            ]
        );
    }

    #[test]
    fn a_run_breaks_at_chunk_bytes_and_a_new_run_forgets_old_keys() {
        let t = upsert(0);
        // the 19-byte header and a 15-byte row stay below 40 bytes, a second row passes them
        let got = runs(40, &[(t, 1), (t, 2), (t, 3), (t, 1), (t, 4)]);
        assert_eq!(
            got,
            vec![
                ("upsert", 0, vec![1, 2]),
                ("upsert", 0, vec![3, 1]),
                ("upsert", 0, vec![4]),
            ]
        );
    }
}
