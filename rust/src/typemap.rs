//! Rewrites the type OIDs embedded in binary values so a subscriber accepts them.
//!
//! `array_recv` and `record_recv` check the element / field type OIDs written inside the value,
//! and OIDs of non-builtin types (enums, composites, domains...) differ between databases. The
//! rewrite walks a value by its source type and replaces each embedded OID in place: OIDs are
//! four bytes on both sides, so no length changes and nothing moves.

use std::collections::HashMap;

/// How a type's binary form is laid out, as far as embedded OIDs are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// No embedded OIDs (base types, enums).
    Scalar,
    /// Header carries the element OID; `inner` is the element type.
    Array,
    /// Every field carries its OID.
    Composite,
    /// Bounds are values of `inner` (the subtype).
    Range,
    /// A count, then ranges of type `inner`.
    Multirange,
    /// Same binary form as `inner` (the base type).
    Domain,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "scalar" => Kind::Scalar,
            "array" => Kind::Array,
            "composite" => Kind::Composite,
            "range" => Kind::Range,
            "multirange" => Kind::Multirange,
            "domain" => Kind::Domain,
            _ => return None,
        })
    }
}

/// One source type: its OID on the subscriber, its kind and its inner source type (or 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeInfo {
    pub dst: u32,
    pub kind: Kind,
    pub inner: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeMapError {
    /// The value does not have the layout its type says.
    Malformed { oid: u32, what: &'static str },
    /// Types nest deeper than any real schema (or the map has a cycle).
    TooDeep,
}

impl std::fmt::Display for TypeMapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TypeMapError::Malformed { oid, what } => {
                write!(f, "value of type {oid} is malformed: {what}")
            }
            TypeMapError::TooDeep => write!(f, "type nesting deeper than {MAX_DEPTH} levels"),
        }
    }
}

impl std::error::Error for TypeMapError {}

const MAX_DEPTH: u32 = 64;
/// array_recv's own limit on dimensions.
const MAXDIM: i32 = 6;

#[derive(Debug, Default, Clone)]
pub struct TypeMap {
    types: HashMap<u32, TypeInfo>,
}

fn read_i32(buf: &[u8], at: usize, oid: u32, what: &'static str) -> Result<i32, TypeMapError> {
    buf.get(at..at + 4)
        .map(|b| i32::from_be_bytes(b.try_into().unwrap()))
        .ok_or(TypeMapError::Malformed { oid, what })
}

impl TypeMap {
    pub fn new(types: HashMap<u32, TypeInfo>) -> Self {
        TypeMap { types }
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// The subscriber's OID for a source OID (unchanged when not mapped: builtin types).
    pub fn dst(&self, oid: u32) -> u32 {
        self.types.get(&oid).map_or(oid, |t| t.dst)
    }

    /// Whether values of `oid` may embed OIDs that need rewriting.
    pub fn needs_walk(&self, oid: u32) -> bool {
        self.types.get(&oid).is_some_and(|t| t.kind != Kind::Scalar)
    }

    /// Rewrites, in place, the OIDs embedded in `value` (a non-NULL value of source type `oid`).
    pub fn rewrite(&self, oid: u32, value: &mut [u8]) -> Result<(), TypeMapError> {
        self.walk(oid, value, 0)
    }

    fn walk(&self, oid: u32, v: &mut [u8], depth: u32) -> Result<(), TypeMapError> {
        if depth > MAX_DEPTH {
            return Err(TypeMapError::TooDeep);
        }
        let Some(info) = self.types.get(&oid) else {
            return Ok(());
        };
        match info.kind {
            Kind::Scalar => Ok(()),
            Kind::Domain => self.walk(info.inner, v, depth + 1),
            Kind::Array => self.walk_array(oid, v, depth),
            Kind::Composite => self.walk_composite(oid, v, depth),
            Kind::Range => self.walk_range(oid, info.inner, v, depth),
            Kind::Multirange => {
                let count = read_i32(v, 0, oid, "no range count")?;
                if count < 0 {
                    return Err(TypeMapError::Malformed {
                        oid,
                        what: "negative range count",
                    });
                }
                let mut p = 4;
                for _ in 0..count {
                    p = self.walk_field(oid, info.inner, v, p, depth, "range")?;
                }
                self.expect_end(oid, v, p)
            }
        }
    }

    /// Walks one length-prefixed value at `p` (NULL allowed); returns the offset after it.
    fn walk_field(
        &self,
        oid: u32,
        inner: u32,
        v: &mut [u8],
        p: usize,
        depth: u32,
        what: &'static str,
    ) -> Result<usize, TypeMapError> {
        let len = read_i32(v, p, oid, what)?;
        let start = p + 4;
        if len == -1 {
            return Ok(start);
        }
        if len < 0 || v.len() - start < len as usize {
            return Err(TypeMapError::Malformed { oid, what });
        }
        let end = start + len as usize;
        self.walk(inner, &mut v[start..end], depth + 1)?;
        Ok(end)
    }

    fn expect_end(&self, oid: u32, v: &[u8], p: usize) -> Result<(), TypeMapError> {
        if p == v.len() {
            Ok(())
        } else {
            Err(TypeMapError::Malformed {
                oid,
                what: "bytes after the last element",
            })
        }
    }

    fn walk_array(&self, oid: u32, v: &mut [u8], depth: u32) -> Result<(), TypeMapError> {
        let ndim = read_i32(v, 0, oid, "no array header")?;
        let elem = read_i32(v, 8, oid, "no array header")? as u32;
        if !(0..=MAXDIM).contains(&ndim) {
            return Err(TypeMapError::Malformed {
                oid,
                what: "bad number of dimensions",
            });
        }
        v[8..12].copy_from_slice(&self.dst(elem).to_be_bytes());
        if !self.needs_walk(elem) {
            return Ok(());
        }
        let mut nitems: u64 = if ndim == 0 { 0 } else { 1 };
        for d in 0..ndim as usize {
            let dim = read_i32(v, 12 + 8 * d, oid, "no array dimensions")?;
            if dim < 0 {
                return Err(TypeMapError::Malformed {
                    oid,
                    what: "negative dimension",
                });
            }
            nitems = nitems.saturating_mul(dim as u64);
        }
        let mut p = 12 + 8 * ndim as usize;
        for _ in 0..nitems {
            p = self.walk_field(oid, elem, v, p, depth, "array element")?;
        }
        self.expect_end(oid, v, p)
    }

    fn walk_composite(&self, oid: u32, v: &mut [u8], depth: u32) -> Result<(), TypeMapError> {
        let ncols = read_i32(v, 0, oid, "no field count")?;
        if ncols < 0 {
            return Err(TypeMapError::Malformed {
                oid,
                what: "negative field count",
            });
        }
        let mut p = 4;
        for _ in 0..ncols {
            let field_oid = read_i32(v, p, oid, "field header")? as u32;
            v[p..p + 4].copy_from_slice(&self.dst(field_oid).to_be_bytes());
            p = self.walk_field(oid, field_oid, v, p + 4, depth, "field")?;
        }
        self.expect_end(oid, v, p)
    }

    fn walk_range(
        &self,
        oid: u32,
        subtype: u32,
        v: &mut [u8],
        depth: u32,
    ) -> Result<(), TypeMapError> {
        const EMPTY: u8 = 0x01;
        const LB_INF: u8 = 0x08;
        const UB_INF: u8 = 0x10;
        const LB_NULL: u8 = 0x20;
        const UB_NULL: u8 = 0x40;
        let flags = *v.first().ok_or(TypeMapError::Malformed {
            oid,
            what: "no range flags",
        })?;
        let mut p = 1;
        if flags & (EMPTY | LB_INF | LB_NULL) == 0 {
            p = self.walk_field(oid, subtype, v, p, depth, "range bound")?;
        }
        if flags & (EMPTY | UB_INF | UB_NULL) == 0 {
            p = self.walk_field(oid, subtype, v, p, depth, "range bound")?;
        }
        self.expect_end(oid, v, p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::build_record;

    const ENUM_SRC: u32 = 70_001;
    const ENUM_DST: u32 = 90_001;
    const ENUM_ARR_SRC: u32 = 70_002;
    const COMP_SRC: u32 = 70_003;
    const COMP_DST: u32 = 90_003;
    const COMP_ARR_SRC: u32 = 70_004;
    const DOM_SRC: u32 = 70_005;
    const RANGE_SRC: u32 = 70_006;
    const MULTI_SRC: u32 = 70_007;

    fn map() -> TypeMap {
        let t = |dst, kind, inner| TypeInfo { dst, kind, inner };
        TypeMap::new(HashMap::from([
            (ENUM_SRC, t(ENUM_DST, Kind::Scalar, 0)),
            (ENUM_ARR_SRC, t(90_002, Kind::Array, ENUM_SRC)),
            (COMP_SRC, t(COMP_DST, Kind::Composite, 0)),
            (COMP_ARR_SRC, t(90_004, Kind::Array, COMP_SRC)),
            (DOM_SRC, t(90_005, Kind::Domain, COMP_ARR_SRC)),
            (RANGE_SRC, t(90_006, Kind::Range, DOM_SRC)),
            (MULTI_SRC, t(90_007, Kind::Multirange, RANGE_SRC)),
        ]))
    }

    /// array_send of a one-dimensional array.
    fn array(elem: u32, items: &[Option<&[u8]>]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [1, items.iter().any(Option::is_none) as i32, elem as i32] {
            v.extend_from_slice(&w.to_be_bytes());
        }
        v.extend_from_slice(&(items.len() as i32).to_be_bytes());
        v.extend_from_slice(&1i32.to_be_bytes());
        for item in items {
            push_field(&mut v, *item);
        }
        v
    }

    fn push_field(v: &mut Vec<u8>, item: Option<&[u8]>) {
        match item {
            Some(b) => {
                v.extend_from_slice(&(b.len() as i32).to_be_bytes());
                v.extend_from_slice(b);
            }
            None => v.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }

    fn oid_at(v: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(v[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn enum_array_gets_the_element_oid_rewritten() {
        let mut v = array(ENUM_SRC, &[Some(b"red"), None, Some(b"blue")]);
        let before = v.clone();
        map().rewrite(ENUM_ARR_SRC, &mut v).unwrap();
        assert_eq!(oid_at(&v, 8), ENUM_DST);
        assert_eq!(v[12..], before[12..]);
    }

    #[test]
    fn builtin_types_are_untouched() {
        let mut v = array(23, &[Some(&[0, 0, 0, 1])]);
        let before = v.clone();
        map().rewrite(1007, &mut v).unwrap();
        assert_eq!(v, before);
    }

    #[test]
    fn nested_composites_through_domain_range_and_multirange() {
        // composite (int4, enum, enum[])
        let comp = build_record(&[
            (23, Some(&[0, 0, 0, 5])),
            (ENUM_SRC, Some(b"red")),
            (ENUM_ARR_SRC, Some(&array(ENUM_SRC, &[Some(b"x")]))),
        ]);
        let comp_arr = array(COMP_SRC, &[Some(&comp), None, Some(&comp)]);
        // range over the domain: flags (lower inclusive), lower bound, upper bound
        let mut range = vec![0x02];
        push_field(&mut range, Some(&comp_arr));
        push_field(&mut range, Some(&comp_arr));
        let mut multi = 2i32.to_be_bytes().to_vec();
        push_field(&mut multi, Some(&range));
        push_field(&mut multi, Some(&[0x01])); // empty range
        let mut v = multi.clone();
        map().rewrite(MULTI_SRC, &mut v).unwrap();
        assert_eq!(v.len(), multi.len());
        // Every embedded source OID was replaced, nothing else changed.
        let src = [ENUM_SRC, COMP_SRC, ENUM_ARR_SRC];
        let dst = [ENUM_DST, COMP_DST, 90_002];
        let mut expected = multi.clone();
        for at in 0..expected.len() - 3 {
            if let Some(i) = src.iter().position(|&o| o == oid_at(&expected, at)) {
                expected[at..at + 4].copy_from_slice(&dst[i].to_be_bytes());
            }
        }
        assert_ne!(expected, multi);
        assert_eq!(v, expected);
    }

    #[test]
    fn malformed_values_are_refused_not_panicked_on() {
        let comp = build_record(&[(ENUM_SRC, Some(b"red")), (23, None)]);
        let comp_arr = array(COMP_SRC, &[Some(&comp)]);
        for cut in 0..comp_arr.len() {
            let mut v = comp_arr[..cut].to_vec();
            assert!(map().rewrite(COMP_ARR_SRC, &mut v).is_err(), "cut {cut}");
        }
        let mut long = comp_arr.clone();
        long.push(0);
        assert!(map().rewrite(COMP_ARR_SRC, &mut long).is_err());
    }

    #[test]
    fn cyclic_map_stops() {
        let m = TypeMap::new(HashMap::from([(
            1,
            TypeInfo {
                dst: 1,
                kind: Kind::Domain,
                inner: 1,
            },
        )]));
        assert_eq!(m.rewrite(1, &mut [0]), Err(TypeMapError::TooDeep));
    }
}
