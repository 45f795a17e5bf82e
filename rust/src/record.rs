//! Parser of a `record_send` payload: int32 field count, then per field an int32 type OID, an
//! int32 length (-1 = NULL) and the value in its binary send format.
//!
//! Fields are returned as positions into the payload, with the length word included, because
//! that length word plus value is exactly a binary COPY field: it is copied, never converted.

/// One field of a record: its type OID and where its length word and value lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub oid: u32,
    /// Offset of the int32 length word.
    pub start: usize,
    /// Offset just past the value (`start + 4` for NULL).
    pub end: usize,
}

impl Field {
    /// The length word and value, as a binary COPY field.
    pub fn with_len<'a>(&self, payload: &'a [u8]) -> &'a [u8] {
        &payload[self.start..self.end]
    }

    /// The value alone, `None` for NULL.
    pub fn value<'a>(&self, payload: &'a [u8]) -> Option<&'a [u8]> {
        let len = i32::from_be_bytes(payload[self.start..self.start + 4].try_into().unwrap());
        (len >= 0).then(|| &payload[self.start + 4..self.end])
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    TooShort,
    BadFieldCount(i32),
    BadLength { field: usize, len: i32 },
    Truncated { field: usize },
    TrailingBytes(usize),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::TooShort => write!(f, "row payload shorter than its field count"),
            RecordError::BadFieldCount(n) => write!(f, "row payload announces {n} fields"),
            RecordError::BadLength { field, len } => {
                write!(f, "row payload field {field} has length {len}")
            }
            RecordError::Truncated { field } => {
                write!(f, "row payload ends inside field {field}")
            }
            RecordError::TrailingBytes(n) => {
                write!(f, "row payload has {n} bytes after its last field")
            }
        }
    }
}

impl std::error::Error for RecordError {}

/// Parses `payload` into `out` (cleared first; its allocation is reused between calls).
pub fn parse_record(payload: &[u8], out: &mut Vec<Field>) -> Result<(), RecordError> {
    out.clear();
    if payload.len() < 4 {
        return Err(RecordError::TooShort);
    }
    let n = i32::from_be_bytes(payload[..4].try_into().unwrap());
    // Each field takes at least 8 bytes, which bounds a lying count before anything is reserved.
    if n < 0 || n as usize > (payload.len() - 4) / 8 {
        return Err(RecordError::BadFieldCount(n));
    }
    out.reserve(n as usize);
    let mut p = 4usize;
    for field in 0..n as usize {
        if payload.len() - p < 8 {
            return Err(RecordError::Truncated { field });
        }
        let oid = u32::from_be_bytes(payload[p..p + 4].try_into().unwrap());
        let start = p + 4;
        let len = i32::from_be_bytes(payload[start..start + 4].try_into().unwrap());
        let mut end = start + 4;
        if len >= 0 {
            if payload.len() - end < len as usize {
                return Err(RecordError::Truncated { field });
            }
            end += len as usize;
        } else if len != -1 {
            return Err(RecordError::BadLength { field, len });
        }
        out.push(Field { oid, start, end });
        p = end;
    }
    if p != payload.len() {
        return Err(RecordError::TrailingBytes(payload.len() - p));
    }
    Ok(())
}

/// Builds a `record_send` payload from (oid, value) pairs; for tests and tools.
pub fn build_record(fields: &[(u32, Option<&[u8]>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(fields.len() as i32).to_be_bytes());
    for (oid, value) in fields {
        out.extend_from_slice(&oid.to_be_bytes());
        match value {
            Some(v) => {
                out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                out.extend_from_slice(v);
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_null_and_empty() {
        let payload = build_record(&[(23, Some(&[0, 0, 0, 7])), (25, None), (17, Some(b""))]);
        let mut fields = Vec::new();
        parse_record(&payload, &mut fields).unwrap();
        assert_eq!(fields.len(), 3);
        assert_eq!(fields[0].oid, 23);
        assert_eq!(fields[0].value(&payload), Some(&[0u8, 0, 0, 7][..]));
        assert_eq!(fields[0].with_len(&payload), &[0, 0, 0, 4, 0, 0, 0, 7]);
        assert_eq!(fields[1].value(&payload), None);
        assert_eq!(fields[1].with_len(&payload), &[0xff; 4]);
        assert_eq!(fields[2].value(&payload), Some(&b""[..]));
    }

    #[test]
    fn empty_record() {
        let mut fields = vec![Field {
            oid: 1,
            start: 0,
            end: 0,
        }];
        parse_record(&[0, 0, 0, 0], &mut fields).unwrap();
        assert!(fields.is_empty());
    }

    #[test]
    fn malformed_payloads_are_refused() {
        let good = build_record(&[(23, Some(&[0, 0, 0, 7])), (25, Some(b"hi"))]);
        let mut fields = Vec::new();
        for cut in 0..good.len() {
            assert!(
                parse_record(&good[..cut], &mut fields).is_err(),
                "cut {cut}"
            );
        }
        let mut extra = good.clone();
        extra.push(0);
        assert_eq!(
            parse_record(&extra, &mut fields),
            Err(RecordError::TrailingBytes(1))
        );
        let mut badlen = good.clone();
        badlen[8..12].copy_from_slice(&(-2i32).to_be_bytes());
        assert_eq!(
            parse_record(&badlen, &mut fields),
            Err(RecordError::BadLength { field: 0, len: -2 })
        );
        assert_eq!(
            parse_record(&[0x7f, 0, 0, 0, 1, 2, 3, 4], &mut fields),
            Err(RecordError::BadFieldCount(0x7f00_0000))
        );
    }
}
