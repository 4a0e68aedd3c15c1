//! PostgreSQL's binary `COPY` format, read as it streams in.
//!
//! `COPY (SELECT ...) TO STDOUT (FORMAT binary)` sends a query's rows as one byte stream: a
//! header, then per row a 16-bit field count and per field a 32-bit length (`-1` for NULL)
//! followed by the value in the type's binary form (big-endian integers, UTF-8 text, raw
//! `bytea`), then a field count of `-1`. A whole-table read this way costs the client a few
//! bounds checks per value, where the row protocol costs a message, a type check and a decode
//! per value. The stream arrives in chunks that split rows anywhere; [`CopyReader`] keeps the
//! bytes of an unfinished row until the chunk that completes it.
//!
//! Format: <https://www.postgresql.org/docs/current/sql-copy.html>, "Binary Format".

/// The 11-byte signature that opens a binary `COPY` stream.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// A malformed stream (not one PostgreSQL sends).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed binary COPY stream: {0}")]
pub struct CopyFormatError(&'static str);

/// Reads rows out of the chunks of a binary `COPY` stream.
#[derive(Debug, Default)]
pub struct CopyReader {
    buf: Vec<u8>,
    /// Where the next unread row starts in `buf`.
    pos: usize,
    header_read: bool,
    ended: bool,
    /// The current row's fields: start and length in `buf`, `None` for NULL.
    fields: Vec<Option<(usize, usize)>>,
}

impl CopyReader {
    /// A reader before the stream's first chunk.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the next chunk of the stream (after the rows read so far are let go).
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.drain(..self.pos.min(self.buf.len()));
        self.pos = 0;
        self.buf.extend_from_slice(chunk);
    }

    /// Whether the stream's end marker was read.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Reads the next complete row and hands its fields to `row`; `Ok(false)` when the bytes
    /// so far hold no complete row (push the next chunk) or the stream has ended.
    pub fn next_row<R>(
        &mut self,
        row: impl FnOnce(&[Option<&[u8]>]) -> R,
    ) -> Result<Option<R>, CopyFormatError> {
        if self.ended {
            return Ok(None);
        }
        if !self.header_read {
            let Some(len) = header_len(self.buf.get(self.pos..).unwrap_or_default())? else {
                return Ok(None);
            };
            self.pos += len;
            self.header_read = true;
        }
        let Some(used) = self.parse_row()? else {
            return Ok(None);
        };
        let start = self.pos;
        self.pos += used;
        if self.ended {
            return Ok(None);
        }
        let buf = &self.buf;
        let values: Vec<Option<&[u8]>> = self
            .fields
            .iter()
            .map(|f| f.and_then(|(s, n)| buf.get(start + s..start + s + n)))
            .collect();
        Ok(Some(row(&values)))
    }

    /// Parses the row at `pos` into `fields` (offsets from `pos`); the bytes it takes, or
    /// `None` when it is not all here yet. The end marker sets `ended`.
    fn parse_row(&mut self) -> Result<Option<usize>, CopyFormatError> {
        let bytes = self.buf.get(self.pos..).unwrap_or_default();
        let Some(count) = be_i16(bytes, 0) else {
            return Ok(None);
        };
        if count == -1 {
            self.ended = true;
            return Ok(Some(2));
        }
        let count = usize::try_from(count).map_err(|_| CopyFormatError("negative field count"))?;
        self.fields.clear();
        let mut at = 2;
        for _ in 0..count {
            let Some(len) = be_i32(bytes, at) else {
                return Ok(None);
            };
            at += 4;
            if len == -1 {
                self.fields.push(None);
                continue;
            }
            let len = usize::try_from(len).map_err(|_| CopyFormatError("negative length"))?;
            if bytes.len() < at + len {
                return Ok(None);
            }
            self.fields.push(Some((at, len)));
            at += len;
        }
        Ok(Some(at))
    }
}

/// The header's length, once all of it is in `bytes`.
fn header_len(bytes: &[u8]) -> Result<Option<usize>, CopyFormatError> {
    let Some(sig) = bytes.get(..SIGNATURE.len()) else {
        return Ok(None);
    };
    if sig != SIGNATURE {
        return Err(CopyFormatError("no binary COPY signature"));
    }
    // Flags (32 bits), then the length of a header extension and the extension.
    let Some(ext) = be_i32(bytes, SIGNATURE.len() + 4) else {
        return Ok(None);
    };
    let ext = usize::try_from(ext).map_err(|_| CopyFormatError("negative extension length"))?;
    let len = SIGNATURE.len() + 8 + ext;
    Ok((bytes.len() >= len).then_some(len))
}

fn be_i16(b: &[u8], at: usize) -> Option<i16> {
    b.get(at..at + 2)?.try_into().ok().map(i16::from_be_bytes)
}

fn be_i32(b: &[u8], at: usize) -> Option<i32> {
    b.get(at..at + 4)?.try_into().ok().map(i32::from_be_bytes)
}

/// A binary integer field (`smallint`, `integer` or `bigint`) as an `i64`.
pub fn int(value: &[u8]) -> Option<i64> {
    match value.len() {
        2 => value.try_into().ok().map(i16::from_be_bytes).map(i64::from),
        4 => value.try_into().ok().map(i32::from_be_bytes).map(i64::from),
        8 => value.try_into().ok().map(i64::from_be_bytes),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream of `rows` as PostgreSQL encodes it.
    fn stream(rows: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend(0i32.to_be_bytes());
        out.extend(3i32.to_be_bytes());
        out.extend(b"ext");
        for row in rows {
            out.extend(i16::try_from(row.len()).unwrap().to_be_bytes());
            for f in row {
                match f {
                    None => out.extend((-1i32).to_be_bytes()),
                    Some(v) => {
                        out.extend(i32::try_from(v.len()).unwrap().to_be_bytes());
                        out.extend(v);
                    }
                }
            }
        }
        out.extend((-1i16).to_be_bytes());
        out
    }

    fn read_all(bytes: &[u8], chunk: usize) -> Vec<Vec<Option<Vec<u8>>>> {
        let mut r = CopyReader::new();
        let mut out = Vec::new();
        for c in bytes.chunks(chunk) {
            r.push(c);
            while let Some(row) = r
                .next_row(|f| f.iter().map(|v| v.map(<[u8]>::to_vec)).collect())
                .unwrap()
            {
                out.push(row);
            }
        }
        assert!(r.ended(), "the end marker was read");
        out
    }

    #[test]
    fn rows_are_read_whatever_the_chunks() {
        let rows = vec![
            vec![
                Some(7i64.to_be_bytes().to_vec()),
                Some(b"text".to_vec()),
                None,
            ],
            vec![Some(Vec::new()), None, Some(vec![0, 255, 1])],
            vec![],
        ];
        let bytes = stream(&rows);
        for chunk in [1, 2, 3, 7, 19, bytes.len()] {
            assert_eq!(read_all(&bytes, chunk), rows, "chunks of {chunk}");
        }
    }

    #[test]
    fn integers_of_every_width_and_malformed_streams() {
        assert_eq!(int(&(-2i16).to_be_bytes()), Some(-2));
        assert_eq!(int(&70_000i32.to_be_bytes()), Some(70_000));
        assert_eq!(int(&(1i64 << 40).to_be_bytes()), Some(1 << 40));
        assert_eq!(int(&[1, 2, 3]), None);

        let mut r = CopyReader::new();
        r.push(b"PGCOPY\nXXXXXXXXXXXX");
        assert!(r.next_row(|_| ()).is_err(), "a wrong signature");

        let mut bad = stream(&[]);
        bad.truncate(bad.len() - 2);
        bad.extend(1i16.to_be_bytes());
        bad.extend((-5i32).to_be_bytes());
        let mut r = CopyReader::new();
        r.push(&bad);
        assert_eq!(r.next_row(|_| ()), Err(CopyFormatError("negative length")));
    }
}
