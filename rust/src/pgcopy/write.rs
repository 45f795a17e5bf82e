//! Writer for PostgreSQL's binary COPY format (`COPY ... FROM STDIN (FORMAT binary)`).
//!
//! Layout: an 11-byte signature, a flags word and a header-extension length, then per tuple a
//! 16-bit field count followed by each field as a 32-bit length (-1 for NULL) and its bytes in the
//! type's binary send format, then a 16-bit -1 trailer. Binary COPY performs no casts, so every
//! value must already be in the destination column's exact binary format.

/// The fixed 11-byte signature that opens every binary COPY stream.
pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01).
pub const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;
/// Days between the Unix epoch and PostgreSQL's epoch.
pub const PG_EPOCH_OFFSET_DAYS: i32 = 10_957;

/// Errors raised while encoding a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// A numeric literal that is not a decimal number, NaN or ±Infinity.
    BadNumeric(String),
    /// A field longer than the 1 GB PostgreSQL allows for one value.
    FieldTooLong(usize),
    /// A row announced with one field count and written with another.
    FieldCount { expected: u16, written: u16 },
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::BadNumeric(s) => write!(f, "not a numeric value: {s:?}"),
            EncodeError::FieldTooLong(n) => write!(f, "field of {n} bytes exceeds 1 GB"),
            EncodeError::FieldCount { expected, written } => {
                write!(
                    f,
                    "row announced {expected} fields but {written} were written"
                )
            }
        }
    }
}

impl std::error::Error for EncodeError {}

const MAX_FIELD: usize = 0x3FFF_FFFF;

/// Builds one binary COPY stream in memory. Callers bound its size by flushing
/// (`finish`) and starting a new writer; the stream is only valid once finished.
pub struct CopyWriter {
    buf: Vec<u8>,
    rows: u64,
    announced: u16,
    written: u16,
}

impl Default for CopyWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl CopyWriter {
    pub fn new() -> Self {
        Self::with_capacity(8192)
    }

    pub fn with_capacity(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity.max(19));
        buf.extend_from_slice(SIGNATURE);
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        CopyWriter {
            buf,
            rows: 0,
            announced: 0,
            written: 0,
        }
    }

    /// Bytes written so far (header included).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    fn check_row_complete(&self) -> Result<(), EncodeError> {
        if self.rows > 0 && self.written != self.announced {
            return Err(EncodeError::FieldCount {
                expected: self.announced,
                written: self.written,
            });
        }
        Ok(())
    }

    /// Starts a tuple of `nfields` fields.
    pub fn begin_row(&mut self, nfields: u16) -> Result<(), EncodeError> {
        self.check_row_complete()?;
        self.buf.extend_from_slice(&(nfields as i16).to_be_bytes());
        self.rows += 1;
        self.announced = nfields;
        self.written = 0;
        Ok(())
    }

    pub fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
        self.written += 1;
    }

    /// A field already in its binary send format.
    pub fn raw(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        if bytes.len() > MAX_FIELD {
            return Err(EncodeError::FieldTooLong(bytes.len()));
        }
        self.buf.reserve(4 + bytes.len());
        self.buf
            .extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(bytes);
        self.written += 1;
        Ok(())
    }

    /// A field given as its length word plus data, exactly as it appears inside a
    /// `record_send` payload or a binary COPY stream (length -1 means NULL).
    pub fn raw_with_len(&mut self, len_and_data: &[u8]) {
        self.buf.extend_from_slice(len_and_data);
        self.written += 1;
    }

    /// A whole tuple whose `nfields` fields are given as length words and values back to back
    /// (already-encoded fields copied in one go).
    pub fn raw_row(&mut self, nfields: u16, fields: &[u8]) -> Result<(), EncodeError> {
        self.begin_row(nfields)?;
        self.buf.extend_from_slice(fields);
        self.written = nfields;
        Ok(())
    }

    pub fn bool(&mut self, v: bool) {
        self.fixed(&[v as u8]);
    }

    pub fn i16(&mut self, v: i16) {
        self.fixed(&v.to_be_bytes());
    }

    pub fn i32(&mut self, v: i32) {
        self.fixed(&v.to_be_bytes());
    }

    pub fn i64(&mut self, v: i64) {
        self.fixed(&v.to_be_bytes());
    }

    pub fn f32(&mut self, v: f32) {
        self.fixed(&v.to_bits().to_be_bytes());
    }

    pub fn f64(&mut self, v: f64) {
        self.fixed(&v.to_bits().to_be_bytes());
    }

    /// text, varchar, char, name, json, xml, enum labels: the UTF-8 bytes.
    pub fn text(&mut self, v: &str) -> Result<(), EncodeError> {
        self.raw(v.as_bytes())
    }

    /// jsonb: a version byte (1) followed by the JSON text.
    pub fn jsonb(&mut self, v: &str) -> Result<(), EncodeError> {
        let mut field = Vec::with_capacity(v.len() + 1);
        field.push(1u8);
        field.extend_from_slice(v.as_bytes());
        self.raw(&field)
    }

    /// timestamp / timestamptz given as microseconds since the Unix epoch (UTC).
    pub fn timestamp_unix_micros(&mut self, micros: i64) {
        self.i64(micros - PG_EPOCH_OFFSET_MICROS);
    }

    /// date given as days since the Unix epoch.
    pub fn date_unix_days(&mut self, days: i32) {
        self.i32(days - PG_EPOCH_OFFSET_DAYS);
    }

    pub fn uuid(&mut self, v: &[u8; 16]) {
        self.fixed(v);
    }

    /// numeric from its decimal text ("-12.340", "NaN", "Infinity", "1e5" is refused).
    pub fn numeric(&mut self, text: &str) -> Result<(), EncodeError> {
        let field = encode_numeric(text)?;
        self.raw(&field)
    }

    fn fixed(&mut self, bytes: &[u8]) {
        self.buf
            .extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(bytes);
        self.written += 1;
    }

    /// Appends the trailer and returns the complete stream.
    pub fn finish(mut self) -> Result<Vec<u8>, EncodeError> {
        self.check_row_complete()?;
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        Ok(self.buf)
    }
}

const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

/// numeric_send format: ndigits, weight, sign, dscale (all int16), then base-10000 digits.
pub fn encode_numeric(text: &str) -> Result<Vec<u8>, EncodeError> {
    let bad = || EncodeError::BadNumeric(text.to_string());
    let t = text.trim();
    let special = match t.to_ascii_lowercase().as_str() {
        "nan" => Some(NUMERIC_NAN),
        "infinity" | "+infinity" | "inf" => Some(NUMERIC_PINF),
        "-infinity" | "-inf" => Some(NUMERIC_NINF),
        _ => None,
    };
    if let Some(sign) = special {
        return Ok(numeric_header(0, 0, sign, 0));
    }
    let (negative, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (int_part, frac_part) = match body.split_once('.') {
        Some((i, f)) => (i, f),
        None => (body, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(bad());
    }
    if !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let dscale = frac_part.len();
    if dscale > i16::MAX as usize {
        return Err(bad());
    }
    let int_digits = int_part.trim_start_matches('0');
    // Pad the integer part on the left and the fraction on the right to whole base-10000 groups.
    let int_pad = (4 - int_digits.len() % 4) % 4;
    let frac_pad = (4 - frac_part.len() % 4) % 4;
    let mut all = String::with_capacity(int_pad + int_digits.len() + frac_part.len() + frac_pad);
    all.extend(std::iter::repeat_n('0', int_pad));
    all.push_str(int_digits);
    all.push_str(frac_part);
    all.extend(std::iter::repeat_n('0', frac_pad));
    let int_groups = (int_pad + int_digits.len()) / 4;
    let mut digits: Vec<i16> = all
        .as_bytes()
        .chunks(4)
        .map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + (d - b'0') as i16))
        .collect();
    let mut weight = int_groups as i32 - 1;
    // Strip leading zero groups (each lowers the weight) and trailing zero groups.
    let leading = digits.iter().take_while(|d| **d == 0).count();
    digits.drain(..leading);
    weight -= leading as i32;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        weight = 0;
    }
    let sign = if negative && !digits.is_empty() {
        NUMERIC_NEG
    } else {
        NUMERIC_POS
    };
    let mut out = numeric_header(digits.len() as i16, weight as i16, sign, dscale as i16);
    for d in digits {
        out.extend_from_slice(&d.to_be_bytes());
    }
    Ok(out)
}

fn numeric_header(ndigits: i16, weight: i16, sign: u16, dscale: i16) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 2 * ndigits.max(0) as usize);
    out.extend_from_slice(&ndigits.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(stream: &[u8]) -> &[u8] {
        &stream[19..stream.len() - 2]
    }

    #[test]
    fn empty_stream_is_header_and_trailer() {
        let out = CopyWriter::new().finish().unwrap();
        assert_eq!(&out[..11], SIGNATURE);
        assert_eq!(&out[11..19], &[0u8; 8]);
        assert_eq!(&out[19..], &[0xff, 0xff]);
    }

    #[test]
    fn row_with_int_null_and_text() {
        let mut w = CopyWriter::new();
        w.begin_row(3).unwrap();
        w.i32(7);
        w.null();
        w.text("hé").unwrap();
        let out = w.finish().unwrap();
        assert_eq!(
            body(&out),
            &[0, 3, 0, 0, 0, 4, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 3, b'h', 0xc3, 0xa9]
        );
    }

    #[test]
    fn wrong_field_count_is_refused() {
        let mut w = CopyWriter::new();
        w.begin_row(2).unwrap();
        w.i32(1);
        assert_eq!(
            w.finish(),
            Err(EncodeError::FieldCount {
                expected: 2,
                written: 1
            })
        );
    }

    #[test]
    fn timestamps_and_dates_use_the_2000_epoch() {
        let mut w = CopyWriter::new();
        w.begin_row(2).unwrap();
        w.timestamp_unix_micros(PG_EPOCH_OFFSET_MICROS);
        w.date_unix_days(PG_EPOCH_OFFSET_DAYS + 1);
        let out = w.finish().unwrap();
        assert_eq!(
            body(&out),
            &[0, 2, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 1]
        );
    }

    fn words(v: &[u8]) -> Vec<i16> {
        v.chunks(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn numeric_matches_numeric_send() {
        // Values checked against `select numeric_send(x)` on PostgreSQL 15.
        assert_eq!(words(&encode_numeric("0").unwrap()), vec![0, 0, 0, 0]);
        assert_eq!(
            words(&encode_numeric("1.5").unwrap()),
            vec![2, 0, 0, 1, 1, 5000]
        );
        assert_eq!(
            words(&encode_numeric("-12345.678").unwrap()),
            vec![3, 1, 0x4000, 3, 1, 2345, 6780]
        );
        assert_eq!(
            words(&encode_numeric("0.0001").unwrap()),
            vec![1, -1, 0, 4, 1]
        );
        assert_eq!(
            words(&encode_numeric("10000").unwrap()),
            vec![1, 1, 0, 0, 1]
        );
        assert_eq!(words(&encode_numeric("0.00").unwrap()), vec![0, 0, 0, 2]);
        // numeric_recv ignores dscale on the special values, so only the sign word matters.
        assert_eq!(words(&encode_numeric("NaN").unwrap())[..3], [0, 0, -16384]);
        assert_eq!(
            words(&encode_numeric("-Infinity").unwrap())[..3],
            [0, 0, -4096]
        );
    }

    #[test]
    fn numeric_refuses_garbage() {
        for bad in ["", "-", "1e5", "1.2.3", "abc", "."] {
            assert!(encode_numeric(bad).is_err(), "{bad:?}");
        }
    }
}
