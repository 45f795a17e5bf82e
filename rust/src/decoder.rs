//! The batch decoder: reads a batch's events from the bytes of its binary COPY, keeps the data
//! events of the added tables (coalesced per key, or in exact order) and turns them into steps.
//!
//! Input columns, in order: ev_id int8, ev_txid xid8, ev_type text, ev_extra1 text,
//! ev_data bytea, ev_extra2 bytea, ev_extra4 text, ev_extra3 text (docs/internals.md,
//! sections 2-4).
//!
//! Shape checks (a table changed on the provider while its events were queued must never have
//! its values shifted into other columns): a data event whose `ev_extra3` (the table's shape
//! when it was captured) differs from the table's `shape`, a row with another number of
//! fields, or a field whose type OID is not the column's, is refused with the event's id.
//!
//! Barriers (docs/internals.md section 4): with `shape_barriers`, such a row is not refused but
//! stops the decoder *before* it, everything earlier flushed into steps, so the caller can
//! apply those, give the table a spec that fits (`replace_table`) and `resume`; an event of one
//! of the `barrier_types` (EXECUTE) stops it *after* that event. A stopped decoder keeps the
//! rest of its input and takes no more until `resume`.

use hashbrown::HashMap;

use crate::coalesce::KeyedRows;
use crate::exact::ExactRuns;
use crate::pgcopy::read::{CopyReader, FeedError, Flow, StreamError, Tuple};
use crate::pgcopy::write::EncodeError;
use crate::record::{parse_record, Field, RecordError};
use crate::snapshot::Snapshot;
use crate::step::{EncodingId, Row, RunKey, Step, StepBuilder, StepKind, StepSplitter};
use crate::typemap::{TypeMap, TypeMapError};

const EVENT_COLUMNS: usize = 8;
/// A coalesced flush makes steps of at most about chunk_bytes / STEP_PARTS.
const STEP_PARTS: usize = 8;
/// PostgreSQL's limit on columns in a table.
const MAX_COLUMNS: usize = 1600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The decoder was called wrongly (bad `add_table` arguments, feed after finish...).
    Usage(String),
    /// The stream's framing is broken.
    Stream(StreamError),
    /// A tuple whose ev_id cannot be read (`index`: 1-based position in the input).
    Tuple { index: u64, problem: String },
    /// A malformed event.
    Event { ev_id: i64, problem: String },
    /// A payload could not be built (a field over 1 GB...).
    Encode(EncodeError),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Usage(msg) => f.write_str(msg),
            DecodeError::Stream(e) => write!(f, "batch stream: {e}"),
            DecodeError::Tuple { index, problem } => {
                write!(f, "batch stream, event #{index}: {problem}")
            }
            DecodeError::Event { ev_id, problem } => write!(f, "event {ev_id}: {problem}"),
            DecodeError::Encode(e) => write!(f, "building a COPY payload: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<EncodeError> for DecodeError {
    fn from(e: EncodeError) -> Self {
        DecodeError::Encode(e)
    }
}

/// A replicated table as the decoder sees it (indices are positions in a full-row payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub name: String,
    pub ncols: usize,
    pub key_cols: Vec<usize>,
    pub out_cols: Vec<usize>,
    pub walk_cols: Vec<usize>,
    pub skip_snapshot: Option<Snapshot>,
    /// The source table's shape as the capture trigger writes it into `ev_extra3`; events
    /// carrying another one are refused (None, or an event without one: not checked).
    pub shape: Option<Vec<u8>>,
    /// The source columns' type OIDs, in payload order (empty: not checked; 0: that column
    /// not checked, as for user-defined types, whose OIDs differ between the nodes).
    pub col_types: Vec<u32>,
    /// With `shape_barriers`: every row event of the table (whatever its shape, none
    /// included) stops the decoder at a shape barrier; truncates go on.
    pub blocked: bool,
}

/// Why the decoder stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarrierKind {
    /// After an event of one of the barrier types.
    Event,
    /// Before a row event its table's spec does not fit (another shape, a blocked table, or
    /// fields of another number or type).
    Shape,
}

impl BarrierKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BarrierKind::Event => "event",
            BarrierKind::Shape => "shape",
        }
    }
}

/// Where and why the decoder stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Barrier {
    pub kind: BarrierKind,
    pub ev_id: i64,
    pub txid: i64,
    pub ev_type: String,
    /// Shape: the table (its name as added).
    pub table: Option<String>,
    /// Shape: the event's `ev_extra3`.
    pub shape: Option<String>,
    /// Shape: why the row does not fit, when its shape is not the reason.
    pub problem: Option<String>,
    pub extra1: Option<String>,
    pub extra2: Option<Vec<u8>>,
    pub data: Option<Vec<u8>>,
}

/// A non-data event (cascade and bookkeeping events), for the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherEvent {
    pub ev_id: i64,
    pub ev_type: String,
    pub extra1: Option<String>,
    pub data: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub bytes_in: u64,
    pub events: u64,
    pub inserts: u64,
    pub updates: u64,
    pub deletes: u64,
    pub truncates: u64,
    pub key_changes: u64,
    pub skipped_snapshot: u64,
    pub skipped_table: u64,
    pub skipped_own: u64,
    pub other_events: u64,
    pub steps: u64,
    pub step_rows: u64,
}

impl Stats {
    pub fn items(&self) -> [(&'static str, u64); 13] {
        [
            ("bytes_in", self.bytes_in),
            ("events", self.events),
            ("inserts", self.inserts),
            ("updates", self.updates),
            ("deletes", self.deletes),
            ("truncates", self.truncates),
            ("key_changes", self.key_changes),
            ("skipped_snapshot", self.skipped_snapshot),
            ("skipped_table", self.skipped_table),
            ("skipped_own", self.skipped_own),
            ("other_events", self.other_events),
            ("steps", self.steps),
            ("step_rows", self.step_rows),
        ]
    }
}

struct Table {
    spec: TableSpec,
    /// Per source column: whether its values need the type map.
    walk: Vec<bool>,
    nkeys: u16,
    nout: u16,
    rows: KeyedRows,
    /// Its new keys may be inserted before the other changes pending (`early_inserts`).
    early: bool,
}

/// Everything but the stream reader, so the reader's callback can borrow it.
struct Events {
    chunk_bytes: usize,
    exact_order: bool,
    tables: Vec<Table>,
    by_name: HashMap<Vec<u8>, usize>,
    type_map: TypeMap,
    encodings: Vec<Vec<u8>>,
    exact: ExactRuns,
    /// Steps made, not handed out yet: those before `ready_front` were handed out by
    /// `next_step` (emptied).
    ready: Vec<Step>,
    ready_front: usize,
    ready_bytes: usize,
    /// A flush `next_step` is making step by step, the coalesced rows kept until it ends.
    flushing: Option<Flush>,
    other: Vec<OtherEvent>,
    stats: Stats,
    /// Event types that stop the decoder after them.
    barrier_types: Vec<Vec<u8>>,
    shape_barriers: bool,
    /// Set when the decoder stopped, until `resume`.
    barrier: Option<Barrier>,
    /// Row events whose ev_id is in one of these ranges (sorted, inclusive) are skipped.
    skip_events: Vec<(i64, i64)>,
    // Scratch buffers reused for every event.
    fields: Vec<Field>,
    old_fields: Vec<Field>,
    key: Vec<u8>,
    old_key: Vec<u8>,
    row: Vec<u8>,
}

/// Where a flush of the coalesced rows is: its passes (a table, a kind of step, an encoding),
/// in apply order, the pass and the entry it goes on from, and the step being written.
/// `inserts_only`: an early flush of the keys new in this round (see `start_flush`).
struct Flush {
    passes: Vec<(RunKey, u16)>,
    pass: usize,
    entry: usize,
    current: Option<StepBuilder>,
    inserts_only: bool,
}

impl Flush {
    /// Deletes of every table, children before parents; then each table's updates and
    /// inserts, parents before children (tables are in parents-first order).
    fn new(tables: &[Table], inserts_only: bool) -> Flush {
        let mut passes = Vec::new();
        let mut add = |i: usize, t: &Table, kind: StepKind, nfields: u16| {
            for encoding in t.rows.encodings(kind) {
                let run = RunKey {
                    kind,
                    table: i,
                    encoding,
                };
                passes.push((run, nfields));
            }
        };
        for (i, t) in tables.iter().enumerate().rev() {
            if !inserts_only {
                add(i, t, StepKind::Delete, t.nkeys);
            }
        }
        for (i, t) in tables.iter().enumerate() {
            if !inserts_only {
                add(i, t, StepKind::Update, t.nout);
            }
            if !inserts_only || t.early {
                add(i, t, StepKind::Insert, t.nout);
            }
        }
        Flush {
            passes,
            pass: 0,
            entry: 0,
            current: None,
            inserts_only,
        }
    }
}

pub struct BatchDecoder {
    reader: CopyReader,
    events: Events,
    finished: bool,
    failed: bool,
}

fn int8(v: Option<&[u8]>) -> Option<i64> {
    Some(i64::from_be_bytes(v?.try_into().ok()?))
}

/// Appends the picked fields (length word and value) of `payload` to `dst`, rewriting embedded
/// type OIDs of the columns that need it. `picks`: (field index, source column).
/// A payload that is a ROW of the key columns only: a delete's `ev_data`, or the old key of an
/// update that changed its key (`ev_extra2`).
struct KeyRecord<'a> {
    /// How errors name it, e.g. ("delete", "carries", "key fields").
    what: (&'static str, &'static str, &'static str),
    payload: &'a [u8],
    fields: &'a [Field],
}

impl KeyRecord<'_> {
    fn gather(
        &self,
        dst: &mut Vec<u8>,
        spec: &TableSpec,
        walk: &[bool],
        type_map: &TypeMap,
    ) -> Result<(), RowError> {
        if self.fields.len() != spec.key_cols.len() {
            return Err(RowError::Misfit(format!(
                "{} of table {} {} {} {}, expected {}",
                self.what.0,
                spec.name,
                self.what.1,
                self.fields.len(),
                self.what.2,
                spec.key_cols.len()
            )));
        }
        let picks = spec.key_cols.iter().copied().enumerate();
        gather(dst, self.payload, self.fields, picks, walk, type_map)
            .map_err(|e| RowError::Bad(format!("table {}: {e}", spec.name)))
    }
}

/// Why a row event could not be decoded.
enum RowError {
    /// Its fields do not fit the table's spec (number, built-in types): a shape barrier.
    Misfit(String),
    /// It is malformed.
    Bad(String),
}

/// Refuses a field whose type is not its column's (the column's type changed on the provider
/// after capture); `cols[i]` is the source column of `fields[i]`.
fn check_types(spec: &TableSpec, fields: &[Field], cols: &[usize]) -> Result<(), String> {
    if spec.col_types.is_empty() {
        return Ok(());
    }
    for (f, &c) in fields.iter().zip(cols) {
        match spec.col_types.get(c) {
            Some(&want) if want != 0 && want != f.oid => {
                return Err(format!(
                    "column {} of table {} has type {} in the event, {} on the provider now: \
                     its type was changed while its events were queued; run resync {} on this \
                     node (and make schema changes with execute)",
                    c + 1,
                    spec.name,
                    f.oid,
                    want,
                    spec.name
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

fn gather(
    dst: &mut Vec<u8>,
    payload: &[u8],
    fields: &[Field],
    picks: impl Iterator<Item = (usize, usize)>,
    walk: &[bool],
    type_map: &TypeMap,
) -> Result<(), TypeMapError> {
    dst.clear();
    for (i, col) in picks {
        let f = &fields[i];
        let start = dst.len();
        dst.extend_from_slice(f.with_len(payload));
        if walk[col] && f.end - f.start > 4 && type_map.needs_walk(f.oid) {
            type_map.rewrite(f.oid, &mut dst[start + 4..])?;
        }
    }
    Ok(())
}

impl BatchDecoder {
    pub fn new(chunk_bytes: usize, exact_order: bool) -> Self {
        BatchDecoder {
            reader: CopyReader::new(),
            events: Events {
                chunk_bytes: chunk_bytes.max(1),
                exact_order,
                tables: Vec::new(),
                by_name: HashMap::new(),
                type_map: TypeMap::default(),
                encodings: Vec::new(),
                exact: ExactRuns::new(chunk_bytes.max(1)),
                ready: Vec::new(),
                ready_front: 0,
                ready_bytes: 0,
                flushing: None,
                other: Vec::new(),
                stats: Stats::default(),
                barrier_types: Vec::new(),
                shape_barriers: false,
                barrier: None,
                skip_events: Vec::new(),
                fields: Vec::new(),
                old_fields: Vec::new(),
                key: Vec::new(),
                old_key: Vec::new(),
                row: Vec::new(),
            },
            finished: false,
            failed: false,
        }
    }

    /// Stops at events of these types (after them) and, with `shape_barriers`, before a row
    /// its table's spec does not fit, instead of refusing it.
    pub fn set_barriers(&mut self, types: Vec<String>, shape_barriers: bool) {
        self.events.barrier_types = types.into_iter().map(String::into_bytes).collect();
        self.events.shape_barriers = shape_barriers;
    }

    pub fn add_table(&mut self, spec: TableSpec) -> Result<(), DecodeError> {
        let walk = self.check_spec(&spec)?;
        let ev = &mut self.events;
        if ev.by_name.contains_key(spec.name.as_bytes()) {
            return Err(DecodeError::Usage(format!(
                "table {}: added twice",
                spec.name
            )));
        }
        ev.by_name
            .insert(spec.name.as_bytes().to_vec(), ev.tables.len());
        ev.tables.push(Table {
            nkeys: spec.key_cols.len() as u16,
            nout: spec.out_cols.len() as u16,
            spec,
            walk,
            rows: KeyedRows::new(),
            early: false,
        });
        Ok(())
    }

    /// The tables (by name) whose new keys an early flush may insert before the other changes
    /// pending (see `start_flush`): those with no unique constraint but their key, so that no
    /// pending delete or update has to free a value first. The others keep everything until a
    /// full flush. Unknown names are refused.
    pub fn early_inserts(&mut self, names: &[String]) -> Result<(), DecodeError> {
        let ev = &mut self.events;
        let mut early = vec![false; ev.tables.len()];
        for name in names {
            let Some(&ti) = ev.by_name.get(name.as_bytes()) else {
                return Err(DecodeError::Usage(format!(
                    "early_inserts: table {name} was never added"
                )));
            };
            early[ti] = true;
        }
        for (t, e) in ev.tables.iter_mut().zip(early) {
            t.early = e;
        }
        Ok(())
    }

    /// Gives an added table another spec (same name), keeping its place in the apply order;
    /// what is pending is flushed into steps first (they were made with the old spec).
    pub fn replace_table(&mut self, spec: TableSpec) -> Result<(), DecodeError> {
        let walk = self.check_spec(&spec)?;
        let Some(&ti) = self.events.by_name.get(spec.name.as_bytes()) else {
            return Err(DecodeError::Usage(format!(
                "table {}: replace_table of a table never added",
                spec.name
            )));
        };
        self.events.flush()?;
        let t = &mut self.events.tables[ti];
        t.nkeys = spec.key_cols.len() as u16;
        t.nout = spec.out_cols.len() as u16;
        t.spec = spec;
        t.walk = walk;
        Ok(())
    }

    /// Checks a spec; returns its per-column walk flags.
    fn check_spec(&self, spec: &TableSpec) -> Result<Vec<bool>, DecodeError> {
        let usage = |msg: String| Err(DecodeError::Usage(format!("table {}: {msg}", spec.name)));
        if spec.ncols == 0 || spec.ncols > MAX_COLUMNS {
            return usage(format!(
                "ncols must be 1..{MAX_COLUMNS}, not {}",
                spec.ncols
            ));
        }
        if spec.key_cols.is_empty() {
            return usage("key_cols is empty (a key is needed)".into());
        }
        if !spec.col_types.is_empty() && spec.col_types.len() != spec.ncols {
            return usage(format!(
                "col_types has {} types for {} columns",
                spec.col_types.len(),
                spec.ncols
            ));
        }
        if spec.blocked && !self.events.shape_barriers {
            return usage("blocked needs shape barriers".into());
        }
        for (what, cols) in [
            ("key_cols", &spec.key_cols),
            ("out_cols", &spec.out_cols),
            ("walk_cols", &spec.walk_cols),
        ] {
            if let Some(bad) = cols.iter().find(|&&c| c >= spec.ncols) {
                return usage(format!(
                    "{what} index {bad} is not below ncols {}",
                    spec.ncols
                ));
            }
            let mut sorted = cols.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != cols.len() {
                return usage(format!("{what} repeats a column"));
            }
        }
        if spec.out_cols.is_empty() {
            return usage("out_cols is empty".into());
        }
        let mut walk = vec![false; spec.ncols];
        for &c in &spec.walk_cols {
            walk[c] = true;
        }
        Ok(walk)
    }

    /// Row events whose ev_id is in one of these inclusive ranges are skipped (counted as
    /// skipped_own), until this is called again (empty: none skipped).
    pub fn set_skip_events(&mut self, mut ranges: Vec<(i64, i64)>) {
        ranges.sort_unstable();
        self.events.skip_events = ranges;
    }

    /// Where the decoder stopped, until `resume`.
    pub fn barrier(&self) -> Option<&Barrier> {
        self.events.barrier.as_ref()
    }

    /// Goes on after a barrier with the input kept; it may stop at the next one.
    pub fn resume(&mut self) -> Result<(), DecodeError> {
        if self.events.barrier.take().is_none() {
            return Err(DecodeError::Usage("resume() without a barrier".into()));
        }
        self.parse(&[])
    }

    pub fn set_type_map(&mut self, map: TypeMap) {
        self.events.type_map = map;
    }

    pub fn table_name(&self, table: usize) -> &str {
        &self.events.tables[table].spec.name
    }

    /// The client encoding name of an interned id (None for the database encoding).
    pub fn encoding_name(&self, id: EncodingId) -> Option<&[u8]> {
        (id > 0).then(|| self.events.encodings[id as usize - 1].as_slice())
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), DecodeError> {
        if self.finished {
            return Err(DecodeError::Usage("feed() after finish()".into()));
        }
        if self.events.barrier.is_some() {
            return Err(DecodeError::Usage(
                "feed() while stopped at a barrier: resume() first".into(),
            ));
        }
        self.events.stats.bytes_in += chunk.len() as u64;
        self.parse(chunk)
    }

    fn parse(&mut self, chunk: &[u8]) -> Result<(), DecodeError> {
        if self.failed {
            return Err(DecodeError::Usage(
                "feed() after an error: decode the batch again with a new decoder".into(),
            ));
        }
        let events = &mut self.events;
        // new events must not change the rows of a flush under way: it is finished first
        events.flush_rest()?;
        let result = self.reader.feed_until(chunk, |t| events.on_tuple(t));
        result.map(|_| ()).map_err(|e| {
            self.failed = true;
            match e {
                FeedError::Copy(c) => DecodeError::Stream(c),
                FeedError::Tuple(d) => d,
            }
        })
    }

    /// Ends the input: it must have ended after a stream trailer.
    pub fn finish(&mut self) -> Result<(), DecodeError> {
        if self.events.barrier.is_some() {
            return Err(DecodeError::Usage(
                "finish() while stopped at a barrier: resume() first".into(),
            ));
        }
        self.reader.finish().map_err(DecodeError::Stream)?;
        self.finished = true;
        Ok(())
    }

    /// Memory held by pending state and undrained steps.
    pub fn pending_bytes(&self) -> usize {
        let ev = &self.events;
        ev.ready_bytes
            + ev.exact.pending_bytes()
            + ev.tables
                .iter()
                .map(|t| t.rows.pending_bytes())
                .sum::<usize>()
            + self.reader.carried()
    }

    /// Everything decoded so far as steps, in apply order.
    pub fn drain(&mut self) -> Result<Vec<Step>, DecodeError> {
        let ev = &mut self.events;
        ev.flush()?;
        let steps: Vec<Step> = ev.ready.drain(ev.ready_front..).collect();
        ev.ready.clear();
        ev.ready_front = 0;
        ev.ready_bytes = 0;
        ev.stats.steps += steps.len() as u64;
        ev.stats.step_rows += steps.iter().map(|s| s.rows).sum::<u64>();
        Ok(steps)
    }

    /// The next step of everything decoded so far (as `drain` would give it), or None when
    /// all are out. Coalesced rows are written into steps one at a time, so draining holds
    /// the rows and one step, not the rows and every step. Feeding before the last step is
    /// out is allowed (the rest of the flush is then made at once).
    pub fn next_step(&mut self) -> Result<Option<Step>, DecodeError> {
        let ev = &mut self.events;
        let mut ended = false;
        while ev.ready_front == ev.ready.len() {
            ev.ready.clear();
            ev.ready_front = 0;
            if ev.flushing.is_none() {
                // a drain ends with its flush while more input may come (an early flush
                // leaves rows pending); after finish(), once nothing is left
                let pending = ev.exact_order || ev.tables.iter().any(|t| !t.rows.is_empty());
                if !pending || (ended && !self.finished) {
                    break;
                }
                ev.start_flush(!self.finished)?;
                if ev.flushing.is_none() && ev.ready.is_empty() {
                    break;
                }
            }
            ev.flush_some()?;
            ended |= ev.flushing.is_none();
        }
        let Some(slot) = ev.ready.get_mut(ev.ready_front) else {
            return Ok(None);
        };
        let step = std::mem::replace(slot, Step::truncate(0));
        ev.ready_front += 1;
        ev.ready_bytes -= step.payload.len();
        ev.stats.steps += 1;
        ev.stats.step_rows += step.rows;
        Ok(Some(step))
    }

    /// The non-data events seen since the last call.
    pub fn take_other_events(&mut self) -> Vec<OtherEvent> {
        std::mem::take(&mut self.events.other)
    }

    pub fn stats(&self) -> &Stats {
        &self.events.stats
    }
}

impl Events {
    fn encoding_id(&mut self, name: Option<&[u8]>) -> EncodingId {
        let Some(name) = name else { return 0 };
        match self.encodings.iter().position(|e| e == name) {
            Some(i) => i as EncodingId + 1,
            None => {
                self.encodings.push(name.to_vec());
                self.encodings.len() as EncodingId
            }
        }
    }

    /// Moves what is pending into ready steps (the rest of a flush under way, too).
    fn flush(&mut self) -> Result<(), DecodeError> {
        self.flush_rest()?; // a flush next_step began, maybe an early one
        self.start_flush(false)?;
        self.flush_rest()
    }

    /// Ends a flush `next_step` began, if any, making its remaining steps at once.
    fn flush_rest(&mut self) -> Result<(), DecodeError> {
        while self.flushing.is_some() {
            self.flush_some()?;
        }
        Ok(())
    }

    /// Begins a flush of what is pending: the exact-order runs at once, the coalesced rows as
    /// a `Flush` that `flush_some` goes on with. With `early`, when the keys new in this round
    /// of the `early_inserts` tables hold a quarter of the rows' memory or more, only their
    /// inserts are written and only they are forgotten: the rows of existing keys stay, so a
    /// key updated again later in the batch is still written once (coalescing over more
    /// events in the same memory). A new key cannot be on the subscriber yet, and those
    /// tables have no other unique value a pending change might have to free first; a
    /// reference that needs one fails the batch into exact order, as in a full flush.
    fn start_flush(&mut self, early: bool) -> Result<(), DecodeError> {
        if self.exact_order {
            let before = self.ready.len();
            self.exact.close(&mut self.ready)?;
            self.ready_bytes += self.ready[before..]
                .iter()
                .map(|s| s.payload.len())
                .sum::<usize>();
        } else if self.tables.iter().any(|t| !t.rows.is_empty()) {
            let inserts_only = early && {
                let early = self.tables.iter().filter(|t| t.early);
                let born: usize = early.map(|t| t.rows.born_bytes()).sum();
                let all: usize = self.tables.iter().map(|t| t.rows.pending_bytes()).sum();
                born >= all / 4
            };
            self.flushing = Some(Flush::new(&self.tables, inserts_only));
        }
        Ok(())
    }

    /// Writes the flush under way on until it has made a step or ended (the coalesced rows
    /// are then forgotten).
    fn flush_some(&mut self) -> Result<(), DecodeError> {
        // Steps a fraction of chunk_bytes: draining holds the rows and little more.
        let step_bytes = (self.chunk_bytes / STEP_PARTS).max(1);
        let Some(f) = self.flushing.as_mut() else {
            return Ok(());
        };
        let before = self.ready.len();
        while self.ready.len() == before {
            let Some(&(run, nfields)) = f.passes.get(f.pass) else {
                for t in &mut self.tables {
                    if !f.inserts_only {
                        t.rows.clear();
                    } else if t.early {
                        t.rows.forget_born();
                    }
                }
                self.flushing = None;
                break;
            };
            let mut out = StepSplitter::resume(&mut self.ready, step_bytes, f.current.take());
            let rows = &self.tables[run.table].rows;
            match rows.write_some(run, nfields, f.entry, &mut out)? {
                Some(next) => {
                    f.entry = next;
                    f.current = out.into_current();
                }
                None => {
                    f.pass += 1;
                    f.entry = 0;
                }
            }
        }
        self.ready_bytes += self.ready[before..]
            .iter()
            .map(|s| s.payload.len())
            .sum::<usize>();
        Ok(())
    }

    fn on_tuple(&mut self, t: &Tuple<'_>) -> Result<Flow, DecodeError> {
        self.stats.events += 1;
        let index = self.stats.events;
        if t.len() != EVENT_COLUMNS {
            return Err(DecodeError::Tuple {
                index,
                problem: format!(
                    "{} columns instead of {EVENT_COLUMNS} (ev_id, ev_txid, ev_type, ev_extra1, \
                     ev_data, ev_extra2, ev_extra4, ev_extra3)",
                    t.len()
                ),
            });
        }
        let Some(ev_id) = int8(t.field(0)) else {
            return Err(DecodeError::Tuple {
                index,
                problem: "ev_id is not a non-NULL int8".into(),
            });
        };
        let bad = |problem: String| DecodeError::Event { ev_id, problem };
        let txid = int8(t.field(1)).ok_or_else(|| bad("ev_txid is not a non-NULL xid8".into()))?;
        let ev_type = t.field(2).ok_or_else(|| bad("ev_type is NULL".into()))?;
        let op = match ev_type {
            [op @ (b'I' | b'U' | b'D' | b'R')] => *op,
            _ => {
                if self.barrier_types.iter().any(|b| b == ev_type) {
                    self.flush()?;
                    self.barrier = Some(Barrier {
                        kind: BarrierKind::Event,
                        ev_id,
                        txid,
                        ev_type: String::from_utf8_lossy(ev_type).into_owned(),
                        table: None,
                        shape: None,
                        problem: None,
                        extra1: t.field(3).map(|b| String::from_utf8_lossy(b).into_owned()),
                        extra2: t.field(5).map(<[u8]>::to_vec),
                        data: t.field(4).map(<[u8]>::to_vec),
                    });
                    return Ok(Flow::StopAfter);
                }
                self.stats.other_events += 1;
                self.other.push(OtherEvent {
                    ev_id,
                    ev_type: String::from_utf8_lossy(ev_type).into_owned(),
                    extra1: t.field(3).map(|b| String::from_utf8_lossy(b).into_owned()),
                    data: t.field(4).map(<[u8]>::to_vec),
                });
                return Ok(Flow::Continue);
            }
        };
        let name = t
            .field(3)
            .ok_or_else(|| bad("data event without a table name (ev_extra1)".into()))?;
        let Some(&ti) = self.by_name.get(name) else {
            self.stats.skipped_table += 1;
            return Ok(Flow::Continue);
        };
        if !self.skip_events.is_empty() && self.skipped(ev_id) {
            self.stats.skipped_own += 1;
            return Ok(Flow::Continue);
        }
        if let Some(snap) = &self.tables[ti].spec.skip_snapshot {
            if snap.visible(txid as u64) {
                self.stats.skipped_snapshot += 1;
                return Ok(Flow::Continue);
            }
        }
        let spec = &self.tables[ti].spec;
        let got = t.field(7);
        if op != b'R' && self.shape_barriers {
            let differs = spec.blocked
                || matches!((&spec.shape, got), (Some(want), Some(got)) if got != want.as_slice());
            if differs {
                return self.stop_before(ti, ev_id, txid, op, got, None);
            }
        } else if let (Some(want), Some(got), true) = (&spec.shape, got, op != b'R') {
            if got != want.as_slice() {
                return Err(bad(format!(
                    "table {} had other columns when this event was captured (shape {}, now {}): \
                     its columns were changed on the provider while its events were queued; \
                     run resync {} on this node (and make schema changes with execute)",
                    spec.name,
                    String::from_utf8_lossy(got),
                    String::from_utf8_lossy(want),
                    spec.name
                )));
            }
        }
        let encoding = self.encoding_id(t.field(6));
        if op == b'R' {
            self.stats.truncates += 1;
            self.flush()?;
            self.ready.push(Step::truncate(ti));
            return Ok(Flow::Continue);
        }
        let data = t
            .field(4)
            .ok_or_else(|| bad(format!("{} event with NULL ev_data", op as char)))?;
        let key_changed = match self.decode_row(ti, op, data, t.field(5)) {
            Ok(changed) => changed,
            Err(RowError::Misfit(problem)) if self.shape_barriers => {
                return self.stop_before(ti, ev_id, txid, op, got, Some(problem));
            }
            Err(RowError::Misfit(problem) | RowError::Bad(problem)) => return Err(bad(problem)),
        };
        self.apply(ti, op, key_changed, encoding)?;
        Ok(Flow::Continue)
    }

    /// Whether `ev_id` is in one of the skipped ranges.
    fn skipped(&self, ev_id: i64) -> bool {
        let after = self.skip_events.partition_point(|&(lo, _)| lo <= ev_id);
        after > 0 && ev_id <= self.skip_events[after - 1].1
    }

    /// Stops at a shape barrier before this row event (handed over again on `resume`).
    fn stop_before(
        &mut self,
        ti: usize,
        ev_id: i64,
        txid: i64,
        op: u8,
        shape: Option<&[u8]>,
        problem: Option<String>,
    ) -> Result<Flow, DecodeError> {
        self.flush()?;
        self.stats.events -= 1; // counted again when it is read again
        self.barrier = Some(Barrier {
            kind: BarrierKind::Shape,
            ev_id,
            txid,
            ev_type: (op as char).to_string(),
            table: Some(self.tables[ti].spec.name.clone()),
            shape: shape.map(|b| String::from_utf8_lossy(b).into_owned()),
            problem,
            extra1: None,
            extra2: None,
            data: None,
        });
        Ok(Flow::StopBefore)
    }

    /// Fills `self.key` and (I/U) `self.row`, and `self.old_key` for a key change (returned).
    fn decode_row(
        &mut self,
        ti: usize,
        op: u8,
        data: &[u8],
        old_key: Option<&[u8]>,
    ) -> Result<bool, RowError> {
        let table = &self.tables[ti];
        let spec = &table.spec;
        let record = |e: RecordError| RowError::Bad(format!("ev_data of table {}: {e}", spec.name));
        let types = |e: TypeMapError| RowError::Bad(format!("table {}: {e}", spec.name));
        parse_record(data, &mut self.fields).map_err(record)?;
        let cols: Vec<usize> = if op == b'D' {
            spec.key_cols.clone()
        } else {
            (0..self.fields.len()).collect()
        };
        check_types(spec, &self.fields, &cols).map_err(RowError::Misfit)?;
        if op == b'D' {
            let key = KeyRecord {
                what: ("delete", "carries", "key fields"),
                payload: data,
                fields: &self.fields,
            };
            key.gather(&mut self.key, spec, &table.walk, &self.type_map)?;
            return Ok(false);
        }
        if self.fields.len() != spec.ncols {
            return Err(RowError::Misfit(format!(
                "row of table {} has {} fields, expected {} (did its columns change without \
                 the subscriber being told?)",
                spec.name,
                self.fields.len(),
                spec.ncols
            )));
        }
        let picks = spec.key_cols.iter().map(|&c| (c, c));
        gather(
            &mut self.key,
            data,
            &self.fields,
            picks,
            &table.walk,
            &self.type_map,
        )
        .map_err(types)?;
        let picks = spec.out_cols.iter().map(|&c| (c, c));
        gather(
            &mut self.row,
            data,
            &self.fields,
            picks,
            &table.walk,
            &self.type_map,
        )
        .map_err(types)?;
        let Some(old) = old_key.filter(|_| op == b'U') else {
            return Ok(false);
        };
        parse_record(old, &mut self.old_fields).map_err(|e| {
            RowError::Bad(format!("old key (ev_extra2) of table {}: {e}", spec.name))
        })?;
        check_types(spec, &self.old_fields, &spec.key_cols).map_err(RowError::Misfit)?;
        let key = KeyRecord {
            what: ("old key", "has", "fields"),
            payload: old,
            fields: &self.old_fields,
        };
        key.gather(&mut self.old_key, spec, &table.walk, &self.type_map)?;
        Ok(self.old_key != self.key)
    }

    fn apply(
        &mut self,
        ti: usize,
        op: u8,
        key_changed: bool,
        enc: EncodingId,
    ) -> Result<(), DecodeError> {
        match op {
            b'I' => self.stats.inserts += 1,
            b'U' => self.stats.updates += 1,
            _ => self.stats.deletes += 1,
        }
        self.stats.key_changes += key_changed as u64;
        let table = &mut self.tables[ti];
        let (nkeys, nout) = (table.nkeys, table.nout);
        if !self.exact_order {
            let rows = &mut table.rows;
            match op {
                b'D' => rows.delete(&self.key, enc),
                _ if key_changed => {
                    rows.delete(&self.old_key, enc);
                    rows.upsert(&self.key, &self.row, true, enc);
                }
                _ => rows.upsert(&self.key, &self.row, op == b'I', enc),
            }
            return Ok(());
        }
        let out = &mut self.ready;
        let before = out.len();
        let ex = &mut self.exact;
        let run = |kind| RunKey {
            kind,
            table: ti,
            encoding: enc,
        };
        let (key, old_key) = (&self.key[..], &self.old_key[..]);
        match op {
            b'D' => ex.push(run(StepKind::Delete), key, Row::new(nkeys, key), out)?,
            _ => {
                if key_changed {
                    let row = Row::new(nkeys, old_key);
                    ex.push(run(StepKind::Delete), old_key, row, out)?;
                }
                let row = Row::new(nout, &self.row);
                ex.push(run(StepKind::Upsert), key, row, out)?;
            }
        }
        self.ready_bytes += out[before..].iter().map(|s| s.payload.len()).sum::<usize>();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgcopy::write::CopyWriter;
    use crate::record::build_record;
    use crate::test_support::*;
    use crate::typemap::{Kind, TypeInfo};
    use std::collections::BTreeMap;

    #[test]
    fn coalesces_to_final_state() {
        let evs = [
            ins("t", 1, "a"),
            upd("t", 1, "b"),
            ins("t", 2, "x"),
            del("t", 2),
            del("t", 3),
            upd("t", 4, "q"),
        ];
        let steps = run(&mut decoder(false, &["t"]), &evs);
        assert_eq!(
            summary(&steps),
            vec![
                ("delete", 0, vec![3]),
                ("update", 0, vec![4]),
                ("insert", 0, vec![1])
            ]
        );
        let rows = copy_rows(&steps[2].payload);
        assert_eq!(rows[0][1].as_deref(), Some(&b"b"[..]));
    }

    #[test]
    fn key_change_is_delete_plus_insert() {
        let steps = run(&mut decoder(false, &["t"]), &[rekey("t", 1, 2, "v")]);
        assert_eq!(
            summary(&steps),
            vec![("delete", 0, vec![1]), ("insert", 0, vec![2])]
        );
        // Changing the key there and back again leaves an update of the original key.
        let evs = [rekey("t", 1, 2, "v"), rekey("t", 2, 1, "w")];
        let steps = run(&mut decoder(false, &["t"]), &evs);
        assert_eq!(summary(&steps), vec![("update", 0, vec![1])]);
    }

    #[test]
    fn delete_then_reinsert_is_one_update() {
        let steps = run(
            &mut decoder(false, &["t"]),
            &[del("t", 1), ins("t", 1, "new")],
        );
        assert_eq!(summary(&steps), vec![("update", 0, vec![1])]);
    }

    #[test]
    fn truncate_is_a_barrier() {
        let evs = [
            ins("t", 1, "a"),
            ins("u", 9, "z"),
            trunc("t"),
            ins("t", 2, "b"),
        ];
        let steps = run(&mut decoder(false, &["t", "u"]), &evs);
        assert_eq!(
            summary(&steps),
            vec![
                ("insert", 0, vec![1]),
                ("insert", 1, vec![9]),
                ("truncate", 0, vec![]),
                ("insert", 0, vec![2]),
            ]
        );
    }

    #[test]
    fn deletes_children_first_rows_parents_first() {
        let evs = [
            del("parent", 1),
            del("child", 10),
            ins("child", 11, "c"),
            ins("parent", 2, "p"),
        ];
        let steps = run(&mut decoder(false, &["parent", "child"]), &evs);
        assert_eq!(
            summary(&steps),
            vec![
                ("delete", 1, vec![10]),
                ("delete", 0, vec![1]),
                ("insert", 0, vec![2]),
                ("insert", 1, vec![11]),
            ]
        );
    }

    #[test]
    fn exact_mode_runs_break_on_key_repeat_and_kind() {
        let evs = [
            upd("t", 1, "tmp"),
            upd("t", 2, "a"),
            upd("t", 1, "b"),
            ins("t", 3, "c"),
            del("t", 4),
            del("t", 5),
            rekey("t", 3, 6, "d"),
            ins("u", 1, "x"),
        ];
        let steps = run(&mut decoder(true, &["t", "u"]), &evs);
        assert_eq!(
            summary(&steps),
            vec![
                ("upsert", 0, vec![1, 2]),
                ("upsert", 0, vec![1, 3]),
                ("delete", 0, vec![4, 5, 3]),
                ("upsert", 0, vec![6]),
                ("upsert", 1, vec![1]),
            ]
        );
    }

    #[test]
    fn skips_unknown_tables_and_snapshot_visible_events_keeps_other_events() {
        let mut d = decoder(false, &[]);
        d.add_table(TableSpec {
            skip_snapshot: Some(Snapshot::new(100, 200, vec![150])),
            ..spec("t")
        })
        .unwrap();
        let at = |txid, e: Ev| Ev { txid, ..e };
        let evs = [
            at(99, ins("t", 1, "copied")),
            at(150, ins("t", 2, "in progress at copy")),
            at(170, ins("t", 3, "committed before copy")),
            at(250, ins("t", 4, "after copy")),
            ins("other", 5, "not ours"),
            Ev {
                data: Some(b"public.t".to_vec()),
                ..ev("londiste.add-table", "x", None)
            },
        ];
        let steps = run(&mut d, &evs);
        assert_eq!(summary(&steps), vec![("insert", 0, vec![2, 4])]);
        let st = d.stats();
        assert_eq!((st.skipped_snapshot, st.skipped_table), (2, 1));
        assert_eq!(st.other_events, 1);
        assert_eq!(
            d.take_other_events(),
            vec![OtherEvent {
                ev_id: 6,
                ev_type: "londiste.add-table".into(),
                extra1: Some("x".into()),
                data: Some(b"public.t".to_vec()),
            }]
        );
        assert!(d.take_other_events().is_empty());
    }

    #[test]
    fn encodings_get_separate_steps() {
        let latin = |e: Ev| Ev {
            enc: Some("LATIN1"),
            ..e
        };
        let evs = [ins("t", 1, "a"), latin(ins("t", 2, "b")), ins("t", 3, "c")];
        let mut d = decoder(false, &["t"]);
        let steps = run(&mut d, &evs);
        assert_eq!(
            summary(&steps),
            vec![("insert", 0, vec![1, 3]), ("insert", 0, vec![2])]
        );
        assert_eq!(d.encoding_name(steps[0].encoding), None);
        assert_eq!(d.encoding_name(steps[1].encoding), Some(&b"LATIN1"[..]));
    }

    #[test]
    fn out_cols_pick_and_reorder_columns() {
        let mut d = BatchDecoder::new(1 << 20, false);
        d.add_table(TableSpec {
            ncols: 3,
            key_cols: vec![2],
            out_cols: vec![2, 0],
            ..spec("t")
        })
        .unwrap();
        let data = build_record(&[
            (TEXT, Some(b"v")),
            (TEXT, None),
            (INT4, Some(&[0, 0, 0, 7])),
        ]);
        let steps = run(&mut d, &[ev("I", "t", Some(data))]);
        assert_eq!(
            copy_rows(&steps[0].payload),
            vec![vec![Some(vec![0, 0, 0, 7]), Some(b"v".to_vec())]]
        );
    }

    #[test]
    fn walk_cols_rewrite_embedded_oids() {
        let mut d = BatchDecoder::new(1 << 20, false);
        d.add_table(TableSpec {
            walk_cols: vec![1],
            ..spec("t")
        })
        .unwrap();
        let info = |dst, kind, inner| TypeInfo { dst, kind, inner };
        d.set_type_map(TypeMap::new(std::collections::HashMap::from([
            (5000, info(6000, Kind::Scalar, 0)),
            (5001, info(6001, Kind::Array, 5000)),
        ])));
        let mut arr = Vec::new();
        for w in [1i32, 0, 5000, 1, 1, 3] {
            arr.extend_from_slice(&w.to_be_bytes());
        }
        arr.extend_from_slice(b"red");
        let data = build_record(&[(INT4, Some(&[0, 0, 0, 1])), (5001, Some(&arr))]);
        let steps = run(&mut d, &[ev("I", "t", Some(data))]);
        let got = copy_rows(&steps[0].payload)[0][1].clone().unwrap();
        assert_eq!(got[8..12], 6000u32.to_be_bytes());
        assert_eq!(got[12..], arr[12..]);
    }

    #[test]
    fn malformed_events_name_the_event() {
        let cases: Vec<(Ev, &str)> = vec![
            (
                ev("I", "t", Some(key(1))),
                "event 1: row of table t has 1 fields, expected 2",
            ),
            (
                ev("D", "t", Some(row(1, "x"))),
                "event 1: delete of table t carries 2 key fields",
            ),
            (ev("I", "t", None), "event 1: I event with NULL ev_data"),
            (
                ev("U", "t", Some(vec![0, 0, 0, 1, 0])),
                "event 1: ev_data of table t:",
            ),
            (
                Ev {
                    table: None,
                    ..ins("t", 1, "a")
                },
                "event 1: data event without a table name",
            ),
            (
                Ev {
                    extra2: Some(row(1, "x")),
                    ..upd("t", 2, "b")
                },
                "event 1: old key of table t has 2 fields, expected 1",
            ),
        ];
        for (e, want) in cases {
            let mut d = decoder(false, &["t"]);
            let err = d.feed(&stream(&[e])).unwrap_err().to_string();
            assert!(err.starts_with(want), "{err:?} should start with {want:?}");
            assert!(d.feed(b"").unwrap_err().to_string().contains("new decoder"));
        }
        let mut d = decoder(false, &["t"]);
        let mut w = CopyWriter::new();
        w.begin_row(2).unwrap();
        w.i64(1);
        w.i64(1);
        let err = d.feed(&w.finish().unwrap()).unwrap_err().to_string();
        assert!(
            err.starts_with("batch stream, event #1: 2 columns instead of 8"),
            "{err}"
        );
        let mut d = decoder(false, &["t"]);
        d.feed(&stream(&[ins("t", 1, "a")])[..30]).unwrap();
        assert_eq!(
            d.finish().unwrap_err().to_string(),
            "batch stream: binary COPY stream ends before its trailer"
        );
    }

    #[test]
    fn events_of_another_shape_or_type_are_refused_not_shifted() {
        let shaped = |shape: Option<&'static str>, e: Ev| Ev { shape, ..e };
        let checked = || TableSpec {
            shape: Some(b"s1".to_vec()),
            col_types: vec![INT4, TEXT],
            ..spec("t")
        };
        // the shape it was captured with, or none (captured before shapes were written)
        for e in [shaped(Some("s1"), ins("t", 1, "a")), ins("t", 2, "b")] {
            let mut d = decoder(false, &[]);
            d.add_table(checked()).unwrap();
            assert_eq!(run(&mut d, &[e]).len(), 1);
        }
        // a truncate carries no row: its shape is not looked at
        let mut d = decoder(false, &[]);
        d.add_table(checked()).unwrap();
        assert_eq!(run(&mut d, &[shaped(Some("s0"), trunc("t"))]).len(), 1);
        let text_key = Ev {
            data: Some(build_record(&[(TEXT, Some(b"1"))])),
            ..del("t", 1)
        };
        let swapped = Ev {
            data: Some(build_record(&[(TEXT, Some(b"x")), (TEXT, Some(b"y"))])),
            ..ins("t", 1, "")
        };
        let cases = [
            (
                shaped(Some("s0"), upd("t", 1, "a")),
                "event 1: table t had other columns when this event was captured (shape s0, now s1)",
            ),
            (swapped, "event 1: column 1 of table t has type 25 in the event, 23 on the provider"),
            (text_key, "event 1: column 1 of table t has type 25 in the event, 23"),
        ];
        for (e, want) in cases {
            let mut d = decoder(false, &[]);
            d.add_table(checked()).unwrap();
            let err = d.feed(&stream(&[e])).unwrap_err().to_string();
            assert!(err.starts_with(want), "{err:?} should start with {want:?}");
        }
        let mut d = decoder(false, &[]);
        let err = d
            .add_table(TableSpec {
                col_types: vec![INT4],
                ..spec("t")
            })
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("table t: col_types has 1 types for 2 columns"),
            "{err}"
        );
    }

    /// Feeds `s` in chunks cut at `cuts`, calling `at` at each barrier (then resuming);
    /// returns every step in order.
    fn run_barriers(
        d: &mut BatchDecoder,
        s: &[u8],
        cuts: &[usize],
        mut at: impl FnMut(&mut BatchDecoder, &Barrier),
    ) -> Vec<Step> {
        let mut steps = Vec::new();
        let mut start = 0;
        for &end in cuts.iter().chain([s.len()].iter()) {
            d.feed(&s[start..end]).unwrap();
            start = end;
            while let Some(b) = d.barrier().cloned() {
                steps.extend(d.drain().unwrap());
                at(d, &b);
                d.resume().unwrap();
            }
        }
        d.finish().unwrap();
        steps.extend(d.drain().unwrap());
        steps
    }

    #[test]
    fn an_event_barrier_stops_after_the_event_with_everything_before_flushed() {
        let exec = Ev {
            txid: 77,
            data: Some(b"alter table t add c int".to_vec()),
            extra2: Some(b"force=1".to_vec()),
            ..ev("EXECUTE", "f.sql", None)
        };
        let evs = [
            ins("t", 1, "a"),
            exec,
            ev("pgq.other", "x", None),
            ins("t", 2, "b"),
        ];
        let s = stream(&evs);
        for cut in 0..=s.len() {
            let mut d = decoder(false, &["t"]);
            d.set_barriers(vec!["EXECUTE".into()], false);
            let mut seen = Vec::new();
            let steps = run_barriers(&mut d, &s, &[cut], |d, b| {
                // steps before the barrier were drained already: nothing is pending
                assert_eq!(d.pending_bytes(), d.events.ready_bytes + d.reader.carried());
                seen.push(b.clone());
            });
            assert_eq!(
                summary(&steps),
                vec![("insert", 0, vec![1]), ("insert", 0, vec![2])],
                "cut {cut}"
            );
            assert_eq!(seen.len(), 1);
            let b = &seen[0];
            assert_eq!((b.kind, b.ev_id, b.txid), (BarrierKind::Event, 2, 77));
            assert_eq!(b.ev_type, "EXECUTE");
            assert_eq!(b.extra1.as_deref(), Some("f.sql"));
            assert_eq!(b.extra2.as_deref(), Some(&b"force=1"[..]));
            assert_eq!(b.data.as_deref(), Some(&b"alter table t add c int"[..]));
            assert_eq!(d.stats().events, 4);
            assert_eq!(d.take_other_events().len(), 1);
        }
    }

    #[test]
    fn a_shape_barrier_stops_before_the_row_and_a_new_spec_decodes_it() {
        let shaped = |shape: &'static str, e: Ev| Ev {
            shape: Some(shape),
            ..e
        };
        let three = |id: i32| {
            build_record(&[
                (INT4, Some(&id.to_be_bytes())),
                (TEXT, Some(b"v")),
                (INT4, Some(&[0, 0, 0, 9])),
            ])
        };
        let evs = [
            shaped("s0", ins("t", 1, "a")),
            shaped("s1", ev("I", "t", Some(three(2)))),
            shaped("s1", upd("t", 1, "b")), // another shape again: a second barrier
            shaped("s1", ev("I", "t", Some(three(3)))),
        ];
        let s = stream(&evs);
        for exact in [false, true] {
            for cut in 0..=s.len() {
                let mut d = BatchDecoder::new(1 << 20, exact);
                d.set_barriers(vec![], true);
                d.add_table(TableSpec {
                    shape: Some(b"s0".to_vec()),
                    col_types: vec![INT4, TEXT],
                    ..spec("t")
                })
                .unwrap();
                let mut seen = Vec::new();
                let steps = run_barriers(&mut d, &s, &[cut], |d, b| {
                    seen.push((b.ev_id, b.shape.clone(), b.problem.clone()));
                    let wide = b
                        .problem
                        .as_deref()
                        .is_none_or(|p| p.contains("has 3 fields"));
                    d.replace_table(TableSpec {
                        ncols: if wide { 3 } else { 2 },
                        out_cols: if wide { vec![0, 2] } else { vec![0, 1] },
                        shape: Some(b"s1".to_vec()),
                        col_types: if wide { vec![INT4, TEXT, INT4] } else { vec![] },
                        ..spec("t")
                    })
                    .unwrap();
                });
                // event 2 has another shape; event 3 has the new shape but 2 fields
                assert_eq!(seen.len(), 3, "cut {cut}");
                assert_eq!(seen[0], (2, Some("s1".into()), None));
                assert_eq!(seen[1].0, 3);
                assert!(seen[1]
                    .2
                    .as_deref()
                    .unwrap()
                    .contains("has 2 fields, expected 3"));
                assert_eq!(seen[2].0, 4);
                assert!(seen[2]
                    .2
                    .as_deref()
                    .unwrap()
                    .contains("has 3 fields, expected 2"));
                let kinds: Vec<_> = summary(&steps).into_iter().map(|s| s.2).collect();
                assert_eq!(kinds, vec![vec![1], vec![2], vec![1], vec![3]], "cut {cut}");
                assert_eq!(d.stats().events, 4);
            }
        }
    }

    #[test]
    fn a_blocked_table_stops_every_row_but_not_truncates() {
        let mut d = BatchDecoder::new(1 << 20, false);
        let blocked = TableSpec {
            blocked: true,
            ..spec("t")
        };
        let err = d.add_table(blocked.clone()).unwrap_err().to_string();
        assert!(err.contains("blocked needs shape barriers"), "{err}");
        d.set_barriers(vec![], true);
        d.add_table(blocked).unwrap();
        d.feed(&stream(&[trunc("t"), ins("t", 1, "a")])).unwrap();
        let b = d.barrier().unwrap().clone();
        assert_eq!((b.kind, b.ev_id, b.shape), (BarrierKind::Shape, 2, None));
        assert_eq!(summary(&d.drain().unwrap()), vec![("truncate", 0, vec![])]);
        assert!(d
            .feed(b"")
            .unwrap_err()
            .to_string()
            .contains("resume() first"));
        assert!(d
            .finish()
            .unwrap_err()
            .to_string()
            .contains("resume() first"));
        d.replace_table(spec("t")).unwrap();
        d.resume().unwrap();
        assert!(d
            .resume()
            .unwrap_err()
            .to_string()
            .contains("without a barrier"));
        d.finish().unwrap();
        assert_eq!(summary(&d.drain().unwrap()), vec![("insert", 0, vec![1])]);
        let err = d.replace_table(spec("u")).unwrap_err().to_string();
        assert!(err.contains("never added"), "{err}");
    }

    #[test]
    fn rows_in_skipped_ranges_are_left_out() {
        let evs = [
            ins("t", 1, "a"),         // 1
            ins("t", 2, "b"),         // 2
            trunc("t"),               // 3
            upd("t", 2, "c"),         // 4
            ins("t", 5, "e"),         // 5
            ins("t", 6, "f"),         // 6
            ev("x.other", "t", None), // 7: not a row, never skipped
        ];
        let mut d = decoder(false, &["t"]);
        d.set_skip_events(vec![(5, 5), (1, 1), (3, 4), (7, 9)]);
        let steps = run(&mut d, &evs);
        assert_eq!(summary(&steps), vec![("insert", 0, vec![2, 6])]);
        assert_eq!(d.stats().skipped_own, 4);
        assert_eq!(d.take_other_events().len(), 1);
        d.set_skip_events(vec![]);
        assert!(!d.events.skipped(5));
    }

    #[test]
    fn bad_table_specs_are_refused() {
        let mut d = decoder(false, &["t"]);
        let cases = [
            (spec("t"), "table t: added twice"),
            (
                TableSpec {
                    key_cols: vec![],
                    ..spec("a")
                },
                "table a: key_cols is empty",
            ),
            (
                TableSpec {
                    key_cols: vec![2],
                    ..spec("a")
                },
                "table a: key_cols index 2",
            ),
            (
                TableSpec {
                    out_cols: vec![0, 0],
                    ..spec("a")
                },
                "table a: out_cols repeats",
            ),
            (
                TableSpec {
                    ncols: 0,
                    ..spec("a")
                },
                "table a: ncols must be",
            ),
        ];
        for (s, want) in cases {
            let err = d.add_table(s).unwrap_err().to_string();
            assert!(err.starts_with(want), "{err:?} vs {want:?}");
        }
    }

    /// Random valid event histories over two tables, applied with random chunk splits and
    /// drains, in both modes: the result always equals replaying the events one by one.
    #[test]
    fn random_histories_apply_to_the_same_state() {
        let names = ["t", "u"];
        for seed in 1..=300u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut truth: Vec<BTreeMap<i32, Vec<u8>>> = vec![BTreeMap::new(); 2];
            let mut evs = Vec::new();
            for n in 0..rng.below(60) {
                let t = rng.below(2) as usize;
                let id = rng.below(8) as i32;
                let val = format!("v{n}");
                let exists = truth[t].contains_key(&id);
                let e = match (rng.below(10), exists) {
                    (0, _) => {
                        truth[t].clear();
                        trunc(names[t])
                    }
                    (1..=3, true) => {
                        truth[t].remove(&id);
                        del(names[t], id)
                    }
                    (4..=5, true) => {
                        let new = rng.below(8) as i32;
                        if truth[t].contains_key(&new) {
                            continue;
                        }
                        truth[t].remove(&id);
                        truth[t].insert(new, val.clone().into_bytes());
                        rekey(names[t], id, new, &val)
                    }
                    (_, true) => {
                        truth[t].insert(id, val.clone().into_bytes());
                        upd(names[t], id, &val)
                    }
                    (_, false) => {
                        truth[t].insert(id, val.clone().into_bytes());
                        ins(names[t], id, &val)
                    }
                };
                evs.push(e);
            }
            let s = stream(&evs);
            for exact in [false, true] {
                let mut d = decoder(exact, &names);
                let mut state = vec![BTreeMap::new(); 2];
                let mut pos = 0;
                while pos < s.len() {
                    let end = (pos + 1 + rng.below(80) as usize).min(s.len());
                    d.feed(&s[pos..end]).unwrap();
                    pos = end;
                    if rng.below(4) == 0 {
                        apply(&mut state, &d.drain().unwrap());
                    }
                }
                d.finish().unwrap();
                apply(&mut state, &d.drain().unwrap());
                assert_eq!(state, truth, "seed {seed}, exact {exact}");
            }
            // step by step, in steps of a row or two, fed again part-way through a flush
            for exact in [false, true] {
                let mut d = BatchDecoder::new(40, exact);
                for t in names {
                    d.add_table(spec(t)).unwrap();
                }
                d.early_inserts(&[names[seed as usize % 2].to_string()])
                    .unwrap();
                let mut state = vec![BTreeMap::new(); 2];
                let mut pos = 0;
                while pos < s.len() {
                    let end = (pos + 1 + rng.below(80) as usize).min(s.len());
                    d.feed(&s[pos..end]).unwrap();
                    pos = end;
                    for _ in 0..rng.below(4) {
                        if let Some(step) = d.next_step().unwrap() {
                            apply(&mut state, &[step]);
                        }
                    }
                }
                d.finish().unwrap();
                while let Some(step) = d.next_step().unwrap() {
                    apply(&mut state, &[step]);
                }
                assert_eq!(state, truth, "seed {seed}, exact {exact}, step by step");
            }
        }
    }

    #[test]
    fn an_early_flush_writes_new_keys_only_and_existing_keys_stay_coalesced() {
        let mut d = decoder(false, &["t"]);
        d.early_inserts(&["t".to_string()]).unwrap();
        // existing keys 1..=3 updated over and over, new keys inserted beside them
        let mut evs = Vec::new();
        for round in 0..3 {
            for id in 1..=3 {
                evs.push(upd("t", id, &format!("u{round}")));
            }
            evs.push(ins("t", 100 + round, "new"));
        }
        d.feed(&stream(&evs[..8])).unwrap();
        let early: Vec<Step> = std::iter::from_fn(|| d.next_step().unwrap()).collect();
        assert_eq!(summary(&early), vec![("insert", 0, vec![100, 101])]);
        assert!(d.pending_bytes() > 0, "the updated keys stay");
        // a key inserted early is updated later: it exists now, so that is an update
        evs.push(upd("t", 100, "again"));
        d.feed(&stream(&evs[8..])).unwrap();
        d.finish().unwrap();
        let rest: Vec<Step> = std::iter::from_fn(|| d.next_step().unwrap()).collect();
        assert_eq!(
            summary(&rest),
            vec![("update", 0, vec![1, 2, 3, 100]), ("insert", 0, vec![102])]
        );
        let mut state = vec![BTreeMap::new()];
        for id in 1..=3 {
            state[0].insert(id, b"old".to_vec());
        }
        apply(&mut state, &early);
        apply(&mut state, &rest);
        assert_eq!(state[0][&1], b"u2");
        assert_eq!(state[0][&100], b"again");
        assert_eq!(d.pending_bytes(), 0);
    }

    #[test]
    fn next_step_gives_drains_steps_one_at_a_time_each_a_part_of_chunk_bytes() {
        let chunk = 16 << 10;
        let evs: Vec<Ev> = (0..3000)
            .map(|i| match i % 5 {
                0..=2 => ins("t", i, &"x".repeat(50)),
                3 => upd("t", i - 3, "y"),
                _ => del("u", i),
            })
            .collect();
        let s = stream(&evs);
        let mut whole = BatchDecoder::new(chunk, false);
        let mut parts = BatchDecoder::new(chunk, false);
        for d in [&mut whole, &mut parts] {
            d.add_table(spec("t")).unwrap();
            d.add_table(spec("u")).unwrap();
            d.feed(&s).unwrap();
            d.finish().unwrap();
        }
        let all = whole.drain().unwrap();
        let pending = parts.pending_bytes();
        let mut one_by_one = Vec::new();
        while let Some(step) = parts.next_step().unwrap() {
            assert!(step.payload.len() < chunk / STEP_PARTS + 100);
            // the rows stay until the flush ends; what is made besides is one step
            assert!(
                parts.pending_bytes() <= pending + 100,
                "{}",
                parts.pending_bytes()
            );
            one_by_one.push(step);
        }
        assert!(one_by_one.len() > 10, "{}", one_by_one.len());
        assert_eq!(one_by_one, all);
        // a step cut for its size is followed by the rest of its rows, of other keys
        let cut: Vec<_> = all.windows(2).filter(|w| w[0].more).collect();
        assert!(cut.len() > 5, "{}", cut.len());
        for w in cut {
            assert_eq!((w[0].kind, w[0].table), (w[1].kind, w[1].table));
            assert!(ids(&w[0].payload)
                .iter()
                .all(|k| !ids(&w[1].payload).contains(k)));
        }
        assert!(!all.last().unwrap().more);
        assert_eq!(parts.pending_bytes(), 0);
        assert_eq!(parts.stats().steps, whole.stats().steps);
        assert!(parts.drain().unwrap().is_empty());
    }

    #[test]
    fn split_at_every_offset_gives_the_same_steps() {
        let evs = [
            ins("t", 1, "a"),
            rekey("t", 1, 2, "b"),
            del("t", 3),
            trunc("t"),
            ins("t", 4, "héllo\n\\,"),
        ];
        let s = stream(&evs);
        let whole = run(&mut decoder(false, &["t"]), &evs);
        for i in 0..=s.len() {
            let mut d = decoder(false, &["t"]);
            d.feed(&s[..i]).unwrap();
            d.feed(&s[i..]).unwrap();
            d.finish().unwrap();
            assert_eq!(d.drain().unwrap(), whole, "split at {i}");
        }
    }

    #[test]
    fn memory_is_bounded_by_draining_at_chunk_bytes() {
        let chunk = 16 << 10;
        for exact in [false, true] {
            let mut d = BatchDecoder::new(chunk, exact);
            d.add_table(spec("t")).unwrap();
            let mut peak = 0;
            let mut rows = 0;
            let mut steps = 0;
            let value = "x".repeat(100);
            for batch in 0..200 {
                let evs: Vec<Ev> = (0..50).map(|i| ins("t", batch * 50 + i, &value)).collect();
                d.feed(&stream(&evs)).unwrap();
                peak = peak.max(d.pending_bytes());
                if d.pending_bytes() >= chunk {
                    for s in d.drain().unwrap() {
                        // Each step stays near chunk_bytes, whatever the backlog.
                        assert!(s.payload.len() < chunk + 200, "{}", s.payload.len());
                        rows += s.rows;
                        steps += 1;
                    }
                    assert!(d.pending_bytes() < 100);
                }
            }
            d.finish().unwrap();
            rows += d.drain().unwrap().iter().map(|s| s.rows).sum::<u64>();
            assert_eq!(rows, 10_000);
            assert!(steps > 50, "{steps}");
            // One fed stream (50 rows, ~7 KB) past the threshold at most.
            assert!(peak < chunk + (16 << 10), "exact {exact}: peak {peak}");
        }
    }

    /// Throughput on 1M synthetic events: `cargo test --release -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn throughput_one_million_events() {
        let value = "some text value of moderate size";
        let n = 1_000_000i32;
        let evs: Vec<Ev> = (0..n)
            .map(|i| match i % 10 {
                0..=5 => ins("t", i, value),
                6..=8 => upd("t", i - 3, value),
                _ => del("t", i - 9),
            })
            .collect();
        let s = stream(&evs);
        for exact in [false, true] {
            let mut d = BatchDecoder::new(64 << 20, exact);
            d.add_table(spec("t")).unwrap();
            let start = std::time::Instant::now();
            let mut out = 0;
            for c in s.chunks(1 << 20) {
                d.feed(c).unwrap();
                if d.pending_bytes() >= 64 << 20 {
                    out += d.drain().unwrap().len();
                }
            }
            d.finish().unwrap();
            out += d.drain().unwrap().len();
            let secs = start.elapsed().as_secs_f64();
            println!(
                "exact={exact}: {n} events, {} MB in {secs:.3}s = {:.0} events/s ({out} steps)",
                s.len() >> 20,
                n as f64 / secs
            );
        }
    }
}
