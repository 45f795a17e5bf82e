//! Coalesced mode: per table and key, the final state of the rows seen since the last flush.
//!
//! Keys and rows are the length-prefixed binary fields copied from the events into one arena
//! per table; a hash table maps a key (a slice of the arena) to its entry with no allocation per
//! key. A newer row for a key overwrites the old one when it fits (else it is appended and the
//! old bytes become garbage until the flush), so memory follows the distinct keys seen more
//! than the events; the caller bounds it by flushing at `chunk_bytes`.

use std::hash::BuildHasher;

use hashbrown::hash_table::Entry as Slot;
use hashbrown::{DefaultHashBuilder, HashTable};

use crate::pgcopy::write::EncodeError;
use crate::step::{EncodingId, Row, RunKey, StepKind, StepSplitter};

const NO_ROW: usize = usize::MAX;

#[derive(Debug, Clone, Copy)]
struct Entry {
    key_off: usize,
    key_len: usize,
    /// Offset of the final row, or NO_ROW when the final state is "deleted".
    row_off: usize,
    row_len: usize,
    /// The key did not exist when the entry was created (first seen as an insert or as the new
    /// key of a key change): a final "deleted" needs no delete on the subscriber.
    born: bool,
    encoding: EncodingId,
}

/// Whether a flush writes the entry in a step of `kind`: a delete of a key whose final state is
/// "deleted" (and that may exist), an update of a row that existed when the flush began, an
/// insert of one that did not (`born`).
fn wanted(kind: StepKind, e: &Entry) -> bool {
    match kind {
        StepKind::Delete => e.row_off == NO_ROW && !e.born,
        StepKind::Update => e.row_off != NO_ROW && !e.born,
        StepKind::Insert => e.row_off != NO_ROW && e.born,
        _ => false,
    }
}

/// The coalesced state of one table.
#[derive(Default)]
pub struct KeyedRows {
    arena: Vec<u8>,
    entries: Vec<Entry>,
    index: HashTable<usize>,
    hasher: DefaultHashBuilder,
}

impl KeyedRows {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Distinct keys held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Memory held, approximately. The hash table holds a bucket (an index and a control
    /// byte) per key and spare ones, 16 bytes per key on average.
    pub fn pending_bytes(&self) -> usize {
        self.arena.len() + self.entries.len() * (std::mem::size_of::<Entry>() + 16)
    }

    /// Index of the entry of `key`, created (with the given `born`) when the key is new.
    fn entry(&mut self, key: &[u8], born: bool, encoding: EncodingId) -> usize {
        let KeyedRows {
            arena,
            entries,
            index,
            hasher,
        } = self;
        let key_at = |i: &usize| &arena[entries[*i].key_off..][..entries[*i].key_len];
        let slot = index.entry(
            hasher.hash_one(key),
            |i| key_at(i) == key,
            |i| hasher.hash_one(key_at(i)),
        );
        match slot {
            Slot::Occupied(o) => *o.get(),
            Slot::Vacant(v) => {
                let i = entries.len();
                v.insert(i);
                entries.push(Entry {
                    key_off: arena.len(),
                    key_len: key.len(),
                    row_off: NO_ROW,
                    row_len: 0,
                    born,
                    encoding,
                });
                arena.extend_from_slice(key);
                i
            }
        }
    }

    /// The key's final state is `row` (insert, or update keeping the key). `new_key`: the key
    /// is known not to exist before this event (insert, new key of a key change).
    pub fn upsert(&mut self, key: &[u8], row: &[u8], new_key: bool, encoding: EncodingId) {
        let i = self.entry(key, new_key, encoding);
        let e = self.entries[i];
        // A key updated again (most often with a row of the same size) reuses its row's bytes,
        // so memory follows the distinct keys rather than the events.
        let row_off = if e.row_off != NO_ROW && e.row_len >= row.len() {
            self.arena[e.row_off..][..row.len()].copy_from_slice(row);
            e.row_off
        } else {
            let at = self.arena.len();
            self.arena.extend_from_slice(row);
            at
        };
        let e = &mut self.entries[i];
        e.row_off = row_off;
        e.row_len = row.len();
        e.encoding = encoding;
    }

    /// The key's final state is "deleted".
    pub fn delete(&mut self, key: &[u8], encoding: EncodingId) {
        let i = self.entry(key, false, encoding);
        let e = &mut self.entries[i];
        e.row_off = NO_ROW;
        e.row_len = 0;
        e.encoding = encoding;
    }

    /// The encodings of the entries a pass of `kind` writes, in first-seen order (almost
    /// always one).
    pub fn encodings(&self, kind: StepKind) -> Vec<EncodingId> {
        let mut encodings: Vec<EncodingId> = Vec::new();
        for e in self.entries.iter().filter(|e| wanted(kind, e)) {
            if !encodings.contains(&e.encoding) {
                encodings.push(e.encoding);
            }
        }
        encodings
    }

    /// One pass of a flush, resumable: the entries of `kind` and `encoding` from entry
    /// `from` on, into `out`, until `out` has ended a step (returns the entry to go on from; the
    /// step being written stays in `out`) or the entries end (None; the last step ended too).
    pub fn write_some(
        &self,
        run: RunKey,
        nfields: u16,
        from: usize,
        out: &mut StepSplitter<'_>,
    ) -> Result<Option<usize>, EncodeError> {
        let steps = out.steps();
        for (i, e) in self.entries.iter().enumerate().skip(from) {
            if e.encoding != run.encoding || !wanted(run.kind, e) {
                continue;
            }
            let (off, len) = if run.kind == StepKind::Delete {
                (e.key_off, e.key_len)
            } else {
                (e.row_off, e.row_len)
            };
            out.push(
                run,
                Row {
                    nfields,
                    fields: &self.arena[off..][..len],
                },
            )?;
            if out.steps() > steps {
                return Ok(Some(i + 1));
            }
        }
        out.close()?;
        Ok(None)
    }

    /// Writes a delete of every key whose final state is "deleted" (and that may exist).
    pub fn write_deletes(
        &self,
        table: usize,
        nkeys: u16,
        out: &mut StepSplitter<'_>,
    ) -> Result<(), EncodeError> {
        self.write(out, StepKind::Delete, table, nkeys)
    }

    /// Writes every key whose final state is a row: first an update of those that existed
    /// when the flush began, then an insert of those that did not (`born`). Updates first, so
    /// that a unique value an existing row gives up is free when a new row takes it.
    pub fn write_rows(
        &self,
        table: usize,
        nout: u16,
        out: &mut StepSplitter<'_>,
    ) -> Result<(), EncodeError> {
        self.write(out, StepKind::Update, table, nout)?;
        self.write(out, StepKind::Insert, table, nout)
    }

    /// Entries of `kind`, in the order their keys were first seen, one pass per encoding.
    fn write(
        &self,
        out: &mut StepSplitter<'_>,
        kind: StepKind,
        table: usize,
        nfields: u16,
    ) -> Result<(), EncodeError> {
        for encoding in self.encodings(kind) {
            let run = RunKey {
                kind,
                table,
                encoding,
            };
            let mut from = 0;
            while let Some(next) = self.write_some(run, nfields, from, out)? {
                from = next;
            }
        }
        Ok(())
    }

    /// Memory held by keys new in this round (`born`): rows an early flush of the inserts
    /// alone would free, approximately.
    pub fn born_bytes(&self) -> usize {
        let per_entry = std::mem::size_of::<Entry>() + 16;
        self.entries
            .iter()
            .filter(|e| e.born)
            .map(|e| e.key_len + if e.row_off == NO_ROW { 0 } else { e.row_len } + per_entry)
            .sum()
    }

    /// Forgets the keys new in this round (`born`) once their inserts are written, keeping
    /// the others (and their place in the order): a later event of a forgotten key finds it
    /// existing, as it then does on the subscriber. The kept bytes move down in the arena, so
    /// no second arena is needed.
    pub fn forget_born(&mut self) {
        let KeyedRows {
            arena,
            entries,
            index,
            hasher,
        } = self;
        entries.retain(|e| !e.born);
        // (offset, 2 * entry + 1 for its row) of every kept slice, moved down in arena order
        let mut slices: Vec<(usize, usize)> = Vec::with_capacity(2 * entries.len());
        for (i, e) in entries.iter().enumerate() {
            slices.push((e.key_off, 2 * i));
            if e.row_off != NO_ROW {
                slices.push((e.row_off, 2 * i + 1));
            }
        }
        slices.sort_unstable();
        let mut end = 0;
        for (off, which) in slices {
            let e = &mut entries[which / 2];
            let (at, len) = if which % 2 == 0 {
                (&mut e.key_off, e.key_len)
            } else {
                (&mut e.row_off, e.row_len)
            };
            arena.copy_within(off..off + len, end);
            *at = end;
            end += len;
        }
        arena.truncate(end);
        index.clear();
        for i in 0..entries.len() {
            let key = |e: &Entry| &arena[e.key_off..][..e.key_len];
            let h = hasher.hash_one(key(&entries[i]));
            index.insert_unique(h, i, |&j| hasher.hash_one(key(&entries[j])));
        }
    }

    /// Forgets everything (keeping allocations for the next round).
    pub fn clear(&mut self) {
        self.arena.clear();
        self.entries.clear();
        self.index.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::Step;
    use crate::test_support::{copy_rows, key_fields, row_fields, summary};

    /// The steps of one flush, as the decoder writes them: deletes, then updates and inserts.
    fn flush(rows: &KeyedRows, chunk_bytes: usize) -> Vec<Step> {
        let mut steps = Vec::new();
        let mut out = StepSplitter::new(&mut steps, chunk_bytes);
        rows.write_deletes(0, 1, &mut out).unwrap();
        rows.write_rows(0, 2, &mut out).unwrap();
        out.close().unwrap();
        steps
    }

    /// The text column of each row of a step.
    fn values(step: &Step) -> Vec<String> {
        copy_rows(&step.payload)
            .into_iter()
            .map(|r| String::from_utf8(r[1].clone().unwrap()).unwrap())
            .collect()
    }

    fn values_of(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_key_born_then_deleted_leaves_no_step() {
        let mut rows = KeyedRows::new();
        rows.upsert(&key_fields(1), &row_fields(1, "a"), true, 0);
        rows.upsert(&key_fields(1), &row_fields(1, "b"), false, 0);
        rows.delete(&key_fields(1), 0);
        assert_eq!(rows.len(), 1);
        assert!(flush(&rows, 1 << 20).is_empty());
    }

    #[test]
    fn final_states_in_first_seen_order_updates_before_inserts() {
        let mut rows = KeyedRows::new();
        rows.upsert(&key_fields(3), &row_fields(3, "new"), true, 0);
        rows.upsert(&key_fields(1), &row_fields(1, "old"), false, 0);
        rows.delete(&key_fields(2), 0);
        // a delete then a re-insert: the key existed before, so the row is an update
        rows.delete(&key_fields(4), 0);
        rows.upsert(&key_fields(4), &row_fields(4, "back"), true, 0);
        rows.upsert(&key_fields(3), &row_fields(3, "newer"), false, 0);
        let steps = flush(&rows, 1 << 20);
        assert_eq!(
            summary(&steps),
            vec![
                ("delete", 0, vec![2]),
                ("update", 0, vec![1, 4]),
                ("insert", 0, vec![3]),
            ]
        );
        assert_eq!(values(&steps[1]), ["old", "back"]);
        assert_eq!(values(&steps[2]), ["newer"]);
    }

    #[test]
    fn each_encoding_gets_its_own_step_and_the_last_event_decides() {
        let mut rows = KeyedRows::new();
        rows.upsert(&key_fields(1), &row_fields(1, "a"), false, 0);
        rows.upsert(&key_fields(2), &row_fields(2, "b"), false, 1);
        rows.upsert(&key_fields(3), &row_fields(3, "c"), false, 1);
        rows.upsert(&key_fields(3), &row_fields(3, "c0"), false, 0);
        let steps = flush(&rows, 1 << 20);
        let got: Vec<_> = steps.iter().map(|s| (s.encoding, values(s))).collect();
        assert_eq!(got, [(0, values_of(&["a", "c0"])), (1, values_of(&["b"]))]);
    }

    #[test]
    fn steps_are_cut_at_chunk_bytes_and_clear_forgets_everything() {
        let mut rows = KeyedRows::new();
        for id in 0..100 {
            rows.upsert(&key_fields(id), &row_fields(id, "0123456789"), true, 0);
        }
        let steps = flush(&rows, 256);
        assert!(steps.len() > 5, "{}", steps.len());
        assert!(steps.iter().all(|s| s.payload.len() < 256 + 64));
        let all: Vec<i32> = summary(&steps).into_iter().flat_map(|s| s.2).collect();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert!(rows.pending_bytes() > 100 * 18);
        rows.clear();
        assert!(rows.is_empty());
        assert!(flush(&rows, 256).is_empty());
        // a key seen before the clear is new again
        rows.delete(&key_fields(5), 0);
        assert_eq!(summary(&flush(&rows, 256)), vec![("delete", 0, vec![5])]);
    }
}
