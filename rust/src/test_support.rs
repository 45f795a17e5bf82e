//! Builders and a simulator shared by the unit tests: events and their batch stream, decoders,
//! row fields as the decoder gathers them, and readers of step payloads.

use std::collections::BTreeMap;

use crate::decoder::{BatchDecoder, TableSpec};
use crate::pgcopy::read::CopyReader;
use crate::pgcopy::write::CopyWriter;
use crate::record::build_record;
use crate::step::{Step, StepKind};

pub(crate) const INT4: u32 = 23;
pub(crate) const TEXT: u32 = 25;

#[derive(Clone)]
pub(crate) struct Ev {
    pub(crate) id: i64,
    pub(crate) txid: i64,
    pub(crate) ty: &'static str,
    pub(crate) table: Option<&'static str>,
    pub(crate) data: Option<Vec<u8>>,
    pub(crate) extra2: Option<Vec<u8>>,
    pub(crate) enc: Option<&'static str>,
    pub(crate) shape: Option<&'static str>,
}

pub(crate) fn row(id: i32, val: &str) -> Vec<u8> {
    build_record(&[
        (INT4, Some(&id.to_be_bytes())),
        (TEXT, Some(val.as_bytes())),
    ])
}

pub(crate) fn key(id: i32) -> Vec<u8> {
    build_record(&[(INT4, Some(&id.to_be_bytes()))])
}

pub(crate) fn ev(ty: &'static str, table: &'static str, data: Option<Vec<u8>>) -> Ev {
    Ev {
        id: 0,
        txid: 1000,
        ty,
        table: Some(table),
        data,
        extra2: None,
        enc: None,
        shape: None,
    }
}

pub(crate) fn ins(t: &'static str, id: i32, v: &str) -> Ev {
    ev("I", t, Some(row(id, v)))
}
pub(crate) fn upd(t: &'static str, id: i32, v: &str) -> Ev {
    ev("U", t, Some(row(id, v)))
}
pub(crate) fn rekey(t: &'static str, old: i32, id: i32, v: &str) -> Ev {
    Ev {
        extra2: Some(key(old)),
        ..ev("U", t, Some(row(id, v)))
    }
}
pub(crate) fn del(t: &'static str, id: i32) -> Ev {
    ev("D", t, Some(key(id)))
}
pub(crate) fn trunc(t: &'static str) -> Ev {
    ev("R", t, None)
}

pub(crate) fn stream(evs: &[Ev]) -> Vec<u8> {
    let mut w = CopyWriter::new();
    for (i, e) in evs.iter().enumerate() {
        w.begin_row(8).unwrap();
        w.i64(if e.id == 0 { i as i64 + 1 } else { e.id });
        w.i64(e.txid);
        w.text(e.ty).unwrap();
        match e.table {
            Some(t) => w.text(t).unwrap(),
            None => w.null(),
        }
        for b in [&e.data, &e.extra2] {
            match b {
                Some(b) => w.raw(b).unwrap(),
                None => w.null(),
            }
        }
        for x in [e.enc, e.shape] {
            match x {
                Some(x) => w.text(x).unwrap(),
                None => w.null(),
            }
        }
    }
    w.finish().unwrap()
}

pub(crate) fn spec(name: &str) -> TableSpec {
    TableSpec {
        name: name.into(),
        ncols: 2,
        key_cols: vec![0],
        out_cols: vec![0, 1],
        walk_cols: vec![],
        skip_snapshot: None,
        shape: None,
        col_types: vec![],
        blocked: false,
    }
}

pub(crate) fn decoder(exact: bool, tables: &[&str]) -> BatchDecoder {
    let mut d = BatchDecoder::new(64 << 20, exact);
    for t in tables {
        d.add_table(spec(t)).unwrap();
    }
    d
}

pub(crate) type Rows = Vec<Vec<Option<Vec<u8>>>>;

pub(crate) fn copy_rows(payload: &[u8]) -> Rows {
    let mut rows = Vec::new();
    let mut r = CopyReader::new();
    r.feed(payload, |t| {
        rows.push(
            (0..t.len())
                .map(|i| t.field(i).map(<[u8]>::to_vec))
                .collect(),
        );
        Ok::<(), ()>(())
    })
    .unwrap();
    r.finish().unwrap();
    rows
}

pub(crate) fn ids(payload: &[u8]) -> Vec<i32> {
    copy_rows(payload)
        .iter()
        .map(|r| i32::from_be_bytes(r[0].as_ref().unwrap()[..].try_into().unwrap()))
        .collect()
}

/// (kind, table, ids) of each step.
pub(crate) fn summary(steps: &[Step]) -> Vec<(&'static str, usize, Vec<i32>)> {
    steps
        .iter()
        .map(|s| {
            let ids = if s.kind == StepKind::Truncate {
                assert!(s.payload.is_empty());
                vec![]
            } else {
                ids(&s.payload)
            };
            assert_eq!(ids.len() as u64, s.rows);
            (s.kind.as_str(), s.table, ids)
        })
        .collect()
}

pub(crate) fn run(d: &mut BatchDecoder, evs: &[Ev]) -> Vec<Step> {
    d.feed(&stream(evs)).unwrap();
    d.finish().unwrap();
    d.drain().unwrap()
}

/// Applies steps to per-table maps id -> value, like the apply does to real tables.
pub(crate) fn apply(state: &mut [BTreeMap<i32, Vec<u8>>], steps: &[Step]) {
    for s in steps {
        let t = &mut state[s.table];
        match s.kind {
            StepKind::Truncate => t.clear(),
            StepKind::Delete => ids(&s.payload).iter().for_each(|k| {
                t.remove(k);
            }),
            StepKind::Insert => {
                for r in copy_rows(&s.payload) {
                    let id = i32::from_be_bytes(r[0].clone().unwrap().try_into().unwrap());
                    assert!(
                        t.insert(id, r[1].clone().unwrap()).is_none(),
                        "insert of {id}"
                    );
                }
            }
            StepKind::Update => {
                for r in copy_rows(&s.payload) {
                    let id = i32::from_be_bytes(r[0].clone().unwrap().try_into().unwrap());
                    assert!(
                        t.insert(id, r[1].clone().unwrap()).is_some(),
                        "update of {id}"
                    );
                }
            }
            StepKind::Upsert => {
                for r in copy_rows(&s.payload) {
                    let id = i32::from_be_bytes(r[0].clone().unwrap().try_into().unwrap());
                    t.insert(id, r[1].clone().unwrap());
                }
            }
        }
    }
}

/// A tiny deterministic generator (xorshift64*), so the tests need no dependency.
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The key of `id` as gathered for a step: one length-prefixed int4 field.
pub(crate) fn key_fields(id: i32) -> Vec<u8> {
    let mut out = 4i32.to_be_bytes().to_vec();
    out.extend_from_slice(&id.to_be_bytes());
    out
}

/// A row (`id`, `val`) as gathered for a step: two length-prefixed fields.
pub(crate) fn row_fields(id: i32, val: &str) -> Vec<u8> {
    let mut out = key_fields(id);
    out.extend_from_slice(&(val.len() as i32).to_be_bytes());
    out.extend_from_slice(val.as_bytes());
    out
}
