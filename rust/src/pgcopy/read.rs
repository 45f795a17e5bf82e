//! Incremental reader of a binary COPY stream (`COPY ... TO STDOUT (FORMAT binary)`), fed in
//! chunks split at any byte.
//!
//! Complete tuples are handed to a callback as field slices borrowed from the chunk (or, for a
//! tuple split across chunks, from a small carry buffer), so nothing is copied per field. Several
//! streams may follow each other (header ... trailer, header ... trailer): a merged batch can be
//! read as one input.

use crate::pgcopy::write::SIGNATURE;

/// Errors in the framing of the stream itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamError {
    BadSignature,
    /// Flags bit 16 (OIDs included) or another critical flag bit is set.
    UnsupportedFlags(u32),
    BadHeaderExtension(i32),
    BadFieldCount(i16),
    BadFieldLength(i32),
    /// `finish` while a header or tuple was incomplete or the trailer was missing.
    Truncated,
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamError::BadSignature => write!(f, "not a binary COPY stream (bad signature)"),
            StreamError::UnsupportedFlags(x) => {
                write!(f, "binary COPY header has unsupported flags {x:#x}")
            }
            StreamError::BadHeaderExtension(n) => {
                write!(f, "binary COPY header extension length {n} is invalid")
            }
            StreamError::BadFieldCount(n) => write!(f, "binary COPY tuple has {n} fields"),
            StreamError::BadFieldLength(n) => write!(f, "binary COPY field has length {n}"),
            StreamError::Truncated => write!(f, "binary COPY stream ends before its trailer"),
        }
    }
}

impl std::error::Error for StreamError {}

/// Either a framing error or the callback's own error.
#[derive(Debug, PartialEq, Eq)]
pub enum FeedError<E> {
    Copy(StreamError),
    Tuple(E),
}

/// What `feed_until`'s callback wants after a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stop after this tuple (it is consumed).
    StopAfter,
    /// Stop before this tuple: the next call hands it over again.
    StopBefore,
}

/// One tuple: `field(i)` is `None` for NULL.
pub struct Tuple<'a> {
    data: &'a [u8],
    /// (offset of the value, length or -1)
    fields: &'a [(usize, i32)],
}

impl<'a> Tuple<'a> {
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn field(&self, i: usize) -> Option<&'a [u8]> {
        let (off, len) = self.fields[i];
        (len >= 0).then(|| &self.data[off..off + len as usize])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a stream's header (at the start, or after a trailer).
    Header,
    Tuples,
}

const HEADER_FIXED: usize = 19;

pub struct CopyReader {
    state: State,
    /// Bytes of an incomplete header or tuple left by the previous chunk.
    carry: Vec<u8>,
    fields: Vec<(usize, i32)>,
    streams: u64,
}

impl Default for CopyReader {
    fn default() -> Self {
        Self::new()
    }
}

fn be_i16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl CopyReader {
    pub fn new() -> Self {
        CopyReader {
            state: State::Header,
            carry: Vec::new(),
            fields: Vec::with_capacity(16),
            streams: 0,
        }
    }

    /// Number of complete streams (header through trailer) read so far.
    pub fn streams(&self) -> u64 {
        self.streams
    }

    /// Bytes held back waiting for the rest of a split header or tuple.
    pub fn carried(&self) -> usize {
        self.carry.len()
    }

    /// Parses every tuple completed by `chunk`, calling `on_tuple` for each in stream order.
    /// After an error the reader must not be fed again.
    pub fn feed<E>(
        &mut self,
        chunk: &[u8],
        mut on_tuple: impl FnMut(&Tuple<'_>) -> Result<(), E>,
    ) -> Result<(), FeedError<E>> {
        self.feed_until(chunk, |t| on_tuple(t).map(|()| Flow::Continue))
            .map(|_| ())
    }

    /// As `feed`, but `on_tuple` may stop the parsing (`Flow::StopAfter`, `Flow::StopBefore`):
    /// the rest of the input, from the tuple after (or the tuple itself), is kept for the
    /// next call, which may pass an empty chunk to go on. Returns whether it stopped.
    pub fn feed_until<E>(
        &mut self,
        chunk: &[u8],
        mut on_tuple: impl FnMut(&Tuple<'_>) -> Result<Flow, E>,
    ) -> Result<bool, FeedError<E>> {
        if self.carry.is_empty() {
            let (used, stopped) = self.parse(chunk, &mut on_tuple)?;
            self.carry.extend_from_slice(&chunk[used..]);
            Ok(stopped)
        } else {
            let mut buf = std::mem::take(&mut self.carry);
            buf.extend_from_slice(chunk);
            let result = self.parse(&buf, &mut on_tuple);
            // Keep the unread tail (the carry buffer's allocation is reused).
            let used = match &result {
                Ok((used, _)) => *used,
                Err(_) => buf.len(),
            };
            buf.drain(..used);
            self.carry = buf;
            Ok(result?.1)
        }
    }

    /// Checks that the input ended cleanly: after a trailer (or with no input at all).
    pub fn finish(&self) -> Result<(), StreamError> {
        if self.state == State::Header && self.carry.is_empty() {
            Ok(())
        } else {
            Err(StreamError::Truncated)
        }
    }

    /// Returns how many bytes of `data` were consumed (complete headers, tuples, trailers) and
    /// whether `on_tuple` stopped the parsing.
    fn parse<E>(
        &mut self,
        data: &[u8],
        on_tuple: &mut impl FnMut(&Tuple<'_>) -> Result<Flow, E>,
    ) -> Result<(usize, bool), FeedError<E>> {
        let mut pos = 0usize;
        loop {
            let rest = &data[pos..];
            match self.state {
                State::Header => {
                    if rest.is_empty() {
                        return Ok((pos, false));
                    }
                    // Refuse a bad signature as soon as its first bytes are here.
                    let n = rest.len().min(SIGNATURE.len());
                    if rest[..n] != SIGNATURE[..n] {
                        return Err(FeedError::Copy(StreamError::BadSignature));
                    }
                    if rest.len() < HEADER_FIXED {
                        return Ok((pos, false));
                    }
                    let flags = be_i32(&rest[11..15]) as u32;
                    // Bits 16..31 are critical: a reader must refuse what it does not know.
                    if flags & 0xFFFF_0000 != 0 {
                        return Err(FeedError::Copy(StreamError::UnsupportedFlags(flags)));
                    }
                    let ext = be_i32(&rest[15..19]);
                    if ext < 0 {
                        return Err(FeedError::Copy(StreamError::BadHeaderExtension(ext)));
                    }
                    let total = HEADER_FIXED + ext as usize;
                    if rest.len() < total {
                        return Ok((pos, false));
                    }
                    pos += total;
                    self.state = State::Tuples;
                }
                State::Tuples => {
                    if rest.len() < 2 {
                        return Ok((pos, false));
                    }
                    let nfields = be_i16(rest);
                    if nfields == -1 {
                        pos += 2;
                        self.state = State::Header;
                        self.streams += 1;
                        continue;
                    }
                    if nfields < 0 {
                        return Err(FeedError::Copy(StreamError::BadFieldCount(nfields)));
                    }
                    self.fields.clear();
                    let mut p = pos + 2;
                    for _ in 0..nfields {
                        if data.len() - p < 4 {
                            return Ok((pos, false));
                        }
                        let len = be_i32(&data[p..]);
                        p += 4;
                        if len == -1 {
                            self.fields.push((p, -1));
                            continue;
                        }
                        if len < 0 {
                            return Err(FeedError::Copy(StreamError::BadFieldLength(len)));
                        }
                        if data.len() - p < len as usize {
                            return Ok((pos, false));
                        }
                        self.fields.push((p, len));
                        p += len as usize;
                    }
                    let tuple = Tuple {
                        data,
                        fields: &self.fields,
                    };
                    match on_tuple(&tuple).map_err(FeedError::Tuple)? {
                        Flow::Continue => pos = p,
                        Flow::StopAfter => return Ok((p, true)),
                        Flow::StopBefore => return Ok((pos, true)),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgcopy::write::CopyWriter;

    type Row = Vec<Option<Vec<u8>>>;

    fn sample_stream() -> (Vec<u8>, Vec<Row>) {
        let rows: Vec<Row> = vec![
            vec![Some(b"abc".to_vec()), None, Some(vec![])],
            vec![Some(vec![0xff; 300]), Some(b"x".to_vec()), None],
            vec![None, None, None],
        ];
        let mut w = CopyWriter::new();
        for row in &rows {
            w.begin_row(row.len() as u16).unwrap();
            for f in row {
                match f {
                    Some(v) => w.raw(v).unwrap(),
                    None => w.null(),
                }
            }
        }
        (w.finish().unwrap(), rows)
    }

    fn read_all(chunks: &[&[u8]]) -> Result<Vec<Row>, FeedError<()>> {
        let mut r = CopyReader::new();
        let mut got = Vec::new();
        for c in chunks {
            r.feed(c, |t| {
                got.push(
                    (0..t.len())
                        .map(|i| t.field(i).map(<[u8]>::to_vec))
                        .collect(),
                );
                Ok::<(), ()>(())
            })?;
        }
        r.finish().map_err(FeedError::Copy)?;
        Ok(got)
    }

    #[test]
    fn whole_stream_in_one_chunk() {
        let (s, rows) = sample_stream();
        assert_eq!(read_all(&[&s]).unwrap(), rows);
    }

    #[test]
    fn split_at_every_offset_and_pair_of_offsets() {
        let (s, rows) = sample_stream();
        for i in 0..=s.len() {
            assert_eq!(read_all(&[&s[..i], &s[i..]]).unwrap(), rows, "split at {i}");
        }
        for i in (0..s.len()).step_by(7) {
            for j in i..=s.len() {
                assert_eq!(
                    read_all(&[&s[..i], &s[i..j], &s[j..]]).unwrap(),
                    rows,
                    "split at {i},{j}"
                );
            }
        }
    }

    #[test]
    fn byte_at_a_time() {
        let (s, rows) = sample_stream();
        let chunks: Vec<&[u8]> = s.chunks(1).collect();
        assert_eq!(read_all(&chunks).unwrap(), rows);
    }

    #[test]
    fn concatenated_streams() {
        let (s, rows) = sample_stream();
        let mut two = s.clone();
        two.extend_from_slice(&s);
        let got = read_all(&[&two[..25], &two[25..s.len() + 3], &two[s.len() + 3..]]).unwrap();
        assert_eq!(got.len(), 2 * rows.len());
    }

    #[test]
    fn feed_until_stops_after_or_before_a_tuple_and_goes_on() {
        let (s, rows) = sample_stream();
        for before in [false, true] {
            for cut in 0..=s.len() {
                let mut r = CopyReader::new();
                let mut got: Vec<Row> = Vec::new();
                let mut stops = 0;
                let mut stopped_once = false;
                let mut on = |t: &Tuple<'_>| {
                    let row: Row = (0..t.len())
                        .map(|i| t.field(i).map(<[u8]>::to_vec))
                        .collect();
                    if row == rows[1] && !stopped_once {
                        stopped_once = true;
                        if before {
                            return Ok::<Flow, ()>(Flow::StopBefore);
                        }
                        got.push(row);
                        return Ok(Flow::StopAfter);
                    }
                    got.push(row);
                    Ok(Flow::Continue)
                };
                for chunk in [&s[..cut], &s[cut..]] {
                    let mut stopped = r.feed_until(chunk, &mut on).unwrap();
                    while stopped {
                        stops += 1;
                        stopped = r.feed_until(&[], &mut on).unwrap();
                    }
                }
                r.finish().unwrap();
                assert_eq!(got, rows, "cut {cut}");
                assert_eq!(stops, 1);
            }
        }
    }

    #[test]
    fn empty_input_and_empty_stream() {
        assert_eq!(read_all(&[]).unwrap(), Vec::<Row>::new());
        let empty = CopyWriter::new().finish().unwrap();
        assert_eq!(read_all(&[&empty]).unwrap(), Vec::<Row>::new());
    }

    #[test]
    fn truncated_everywhere_is_refused() {
        let (s, _) = sample_stream();
        for i in 1..s.len() {
            assert_eq!(
                read_all(&[&s[..i]]),
                Err(FeedError::Copy(StreamError::Truncated)),
                "cut at {i}"
            );
        }
    }

    #[test]
    fn bad_signature_flags_and_lengths() {
        let (s, _) = sample_stream();
        let mut bad = s.clone();
        bad[0] = b'X';
        assert_eq!(
            read_all(&[&bad[..1]]),
            Err(FeedError::Copy(StreamError::BadSignature))
        );
        let mut oids = s.clone();
        oids[12] = 1; // bit 16: OIDs included
        assert_eq!(
            read_all(&[&oids]),
            Err(FeedError::Copy(StreamError::UnsupportedFlags(0x10000)))
        );
        let mut len = s.clone();
        len[21..25].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(
            read_all(&[&len]),
            Err(FeedError::Copy(StreamError::BadFieldLength(-5)))
        );
        let mut count = s.clone();
        count[19..21].copy_from_slice(&(-3i16).to_be_bytes());
        assert_eq!(
            read_all(&[&count]),
            Err(FeedError::Copy(StreamError::BadFieldCount(-3)))
        );
    }

    #[test]
    fn callback_error_stops_reading() {
        let (s, _) = sample_stream();
        let mut r = CopyReader::new();
        let mut seen = 0;
        let err = r.feed(&s, |_| {
            seen += 1;
            if seen == 2 {
                Err("second")
            } else {
                Ok(())
            }
        });
        assert_eq!(err, Err(FeedError::Tuple("second")));
        assert_eq!(seen, 2);
    }
}
