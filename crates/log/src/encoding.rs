//! The binary layout of journal entries.
//!
//! An entry's payload is a list of operations applied together (that is what makes
//! "append and commit" atomic): `u32 count`, then per operation a kind byte and its fields.
//! Integers are little-endian; strings are `u16 length` + UTF-8; optional bytes are
//! `i32 length` (-1 for null) + bytes.

use bytes::{Buf, BufMut, Bytes};

use crate::{Header, Record};

const OP_CREATE_TOPIC: u8 = 1;
const OP_RECORDS: u8 = 2;
const OP_COMMIT: u8 = 3;
const OP_TOPIC_CONFIG: u8 = 4;
const OP_MOVED_RECORDS: u8 = 5;
/// A commit with metadata (commits without keep the shorter `OP_COMMIT`).
const OP_COMMIT_WITH_METADATA: u8 = 6;
const OP_DELETE_TOPIC: u8 = 7;

/// One operation of a journal entry, as decoded on replay. Record payloads are not decoded
/// here: replay only needs where they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A topic exists with this many partitions; `next_offsets` (may be empty) carries the log
    /// end offsets into a new segment so they survive deletion of older segments.
    CreateTopic {
        name: String,
        partitions: u32,
        next_offsets: Vec<u64>,
    },
    /// Records of one partition; `body` is where their bytes sit inside the payload.
    /// `moved` records were copied forward by compaction from a segment about to be deleted:
    /// they keep their offsets, which lie before the partition's end.
    Records {
        topic: String,
        partition: u32,
        base_offset: u64,
        count: u32,
        body: std::ops::Range<usize>,
        moved: bool,
    },
    /// A topic's settings, as Kafka topic configs (only those differing from the defaults).
    TopicConfig {
        name: String,
        properties: Vec<(String, String)>,
    },
    Commit {
        group: String,
        topic: String,
        partition: u32,
        offset: u64,
        metadata: String,
    },
    /// A topic is gone, with its records, settings and committed offsets.
    DeleteTopic { name: String },
}

/// Builds one entry payload.
#[derive(Default)]
pub struct PayloadWriter {
    buf: Vec<u8>,
    count: u32,
}

impl PayloadWriter {
    pub fn new() -> PayloadWriter {
        PayloadWriter {
            buf: vec![0; 4],
            count: 0,
        }
    }

    pub fn create_topic(&mut self, name: &str, partitions: u32, next_offsets: &[u64]) {
        self.count += 1;
        self.buf.put_u8(OP_CREATE_TOPIC);
        put_str(&mut self.buf, name);
        self.buf.put_u32_le(partitions);
        self.buf.put_u32_le(next_offsets.len() as u32);
        for offset in next_offsets {
            self.buf.put_u64_le(*offset);
        }
    }

    pub fn delete_topic(&mut self, name: &str) {
        self.count += 1;
        self.buf.put_u8(OP_DELETE_TOPIC);
        put_str(&mut self.buf, name);
    }

    pub fn records(&mut self, topic: &str, partition: u32, base_offset: u64, records: &[Record]) {
        self.records_op(OP_RECORDS, topic, partition, base_offset, records);
    }

    /// Records copied forward by compaction, keeping their offsets (consecutive from `base`).
    pub fn moved_records(&mut self, topic: &str, partition: u32, base: u64, records: &[Record]) {
        self.records_op(OP_MOVED_RECORDS, topic, partition, base, records);
    }

    pub fn topic_config(&mut self, name: &str, properties: &[(&str, String)]) {
        self.count += 1;
        self.buf.put_u8(OP_TOPIC_CONFIG);
        put_str(&mut self.buf, name);
        self.buf.put_u16_le(properties.len() as u16);
        for (key, value) in properties {
            put_str(&mut self.buf, key);
            put_str(&mut self.buf, value);
        }
    }

    fn records_op(
        &mut self,
        kind: u8,
        topic: &str,
        partition: u32,
        base_offset: u64,
        records: &[Record],
    ) {
        self.count += 1;
        self.buf.put_u8(kind);
        put_str(&mut self.buf, topic);
        self.buf.put_u32_le(partition);
        self.buf.put_u64_le(base_offset);
        self.buf.put_u32_le(records.len() as u32);
        let len_at = self.buf.len();
        self.buf.put_u32_le(0);
        for record in records {
            self.buf.put_i64_le(record.timestamp);
            put_opt_bytes(&mut self.buf, record.key.as_deref());
            put_opt_bytes(&mut self.buf, record.value.as_deref());
            self.buf.put_u16_le(record.headers.len() as u16);
            for header in &record.headers {
                put_str(&mut self.buf, &header.key);
                put_opt_bytes(&mut self.buf, header.value.as_deref());
            }
        }
        let body_len = (self.buf.len() - len_at - 4) as u32;
        self.buf[len_at..len_at + 4].copy_from_slice(&body_len.to_le_bytes());
    }

    pub fn commit(
        &mut self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
        metadata: &str,
    ) {
        self.count += 1;
        self.buf.put_u8(match metadata.is_empty() {
            true => OP_COMMIT,
            false => OP_COMMIT_WITH_METADATA,
        });
        put_str(&mut self.buf, group);
        put_str(&mut self.buf, topic);
        self.buf.put_u32_le(partition);
        self.buf.put_u64_le(offset);
        if !metadata.is_empty() {
            put_str(&mut self.buf, metadata);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The finished payload.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf[..4].copy_from_slice(&self.count.to_le_bytes());
        self.buf
    }
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.put_u16_le(s.len() as u16);
    buf.put_slice(s.as_bytes());
}

fn put_opt_bytes(buf: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            buf.put_i32_le(b.len() as i32);
            buf.put_slice(b);
        }
        None => buf.put_i32_le(-1),
    }
}

/// The fewest bytes a record takes: timestamp, key and value lengths, header count.
const RECORD_MIN_BYTES: usize = 8 + 4 + 4 + 2;
/// The fewest bytes a header takes: name length and value length.
const HEADER_MIN_BYTES: usize = 2 + 4;

/// A decoding failure: the payload does not have the layout above.
#[derive(Debug)]
pub struct Malformed(pub &'static str);

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn need(&self, n: usize) -> Result<(), Malformed> {
        if self.data.len() - self.pos >= n {
            Ok(())
        } else {
            Err(Malformed("entry ends early"))
        }
    }
    fn u8(&mut self) -> Result<u8, Malformed> {
        self.need(1)?;
        self.pos += 1;
        Ok(self.data[self.pos - 1])
    }
    fn u16(&mut self) -> Result<u16, Malformed> {
        self.need(2)?;
        let v = (&self.data[self.pos..]).get_u16_le();
        self.pos += 2;
        Ok(v)
    }
    fn u32(&mut self) -> Result<u32, Malformed> {
        self.need(4)?;
        let v = (&self.data[self.pos..]).get_u32_le();
        self.pos += 4;
        Ok(v)
    }
    fn u64(&mut self) -> Result<u64, Malformed> {
        self.need(8)?;
        let v = (&self.data[self.pos..]).get_u64_le();
        self.pos += 8;
        Ok(v)
    }
    fn str(&mut self) -> Result<String, Malformed> {
        let len = self.u16()? as usize;
        self.need(len)?;
        let s = std::str::from_utf8(&self.data[self.pos..self.pos + len])
            .map_err(|_| Malformed("name is not UTF-8"))?;
        self.pos += len;
        Ok(s.to_string())
    }
}

/// Decodes the operations of an entry payload.
pub fn decode_ops(payload: &[u8]) -> Result<Vec<Op>, Malformed> {
    let mut r = Reader {
        data: payload,
        pos: 0,
    };
    let count = r.u32()?;
    let mut ops = Vec::with_capacity(count.min(1024) as usize);
    for _ in 0..count {
        let op = match r.u8()? {
            OP_CREATE_TOPIC => {
                let name = r.str()?;
                let partitions = r.u32()?;
                let n = r.u32()? as usize;
                r.need(n.saturating_mul(8))?;
                let next_offsets = (0..n).map(|_| r.u64()).collect::<Result<_, _>>()?;
                Op::CreateTopic {
                    name,
                    partitions,
                    next_offsets,
                }
            }
            kind @ (OP_RECORDS | OP_MOVED_RECORDS) => {
                let topic = r.str()?;
                let partition = r.u32()?;
                let base_offset = r.u64()?;
                let count = r.u32()?;
                let len = r.u32()? as usize;
                r.need(len)?;
                let body = r.pos..r.pos + len;
                r.pos += len;
                Op::Records {
                    topic,
                    partition,
                    base_offset,
                    count,
                    body,
                    moved: kind == OP_MOVED_RECORDS,
                }
            }
            OP_TOPIC_CONFIG => {
                let name = r.str()?;
                let n = r.u16()?;
                let mut properties = Vec::with_capacity(usize::from(n).min(64));
                for _ in 0..n {
                    properties.push((r.str()?, r.str()?));
                }
                Op::TopicConfig { name, properties }
            }
            kind @ (OP_COMMIT | OP_COMMIT_WITH_METADATA) => Op::Commit {
                group: r.str()?,
                topic: r.str()?,
                partition: r.u32()?,
                offset: r.u64()?,
                metadata: match kind {
                    OP_COMMIT_WITH_METADATA => r.str()?,
                    _ => String::new(),
                },
            },
            OP_DELETE_TOPIC => Op::DeleteTopic { name: r.str()? },
            _ => return Err(Malformed("unknown operation kind")),
        };
        ops.push(op);
    }
    Ok(ops)
}

/// Decodes the records of a `Records` body; `body` is shared, records slice into it.
pub fn decode_records(body: &Bytes, count: u32) -> Result<Vec<Record>, Malformed> {
    let mut buf = body.clone();
    // The count comes from the journal: a damaged one must not reserve more records than
    // the body could hold (each needs at least 18 bytes).
    let mut records = Vec::with_capacity((count as usize).min(body.len() / RECORD_MIN_BYTES));
    let opt_bytes = |buf: &mut Bytes| -> Result<Option<Bytes>, Malformed> {
        if buf.remaining() < 4 {
            return Err(Malformed("record ends early"));
        }
        let len = buf.get_i32_le();
        if len < 0 {
            return Ok(None);
        }
        let len = len as usize;
        if buf.remaining() < len {
            return Err(Malformed("record ends early"));
        }
        Ok(Some(buf.split_to(len)))
    };
    for _ in 0..count {
        if buf.remaining() < 8 {
            return Err(Malformed("record ends early"));
        }
        let timestamp = buf.get_i64_le();
        let key = opt_bytes(&mut buf)?;
        let value = opt_bytes(&mut buf)?;
        if buf.remaining() < 2 {
            return Err(Malformed("record ends early"));
        }
        let header_count = buf.get_u16_le();
        let mut headers =
            Vec::with_capacity((header_count as usize).min(buf.remaining() / HEADER_MIN_BYTES));
        for _ in 0..header_count {
            if buf.remaining() < 2 {
                return Err(Malformed("header ends early"));
            }
            let len = buf.get_u16_le() as usize;
            if buf.remaining() < len {
                return Err(Malformed("header ends early"));
            }
            let name = buf.split_to(len);
            let key = String::from_utf8(name.to_vec())
                .map_err(|_| Malformed("header name is not UTF-8"))?;
            let value = opt_bytes(&mut buf)?;
            headers.push(Header { key, value });
        }
        records.push(Record {
            key,
            value,
            timestamp,
            headers,
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip() {
        let records = vec![
            Record {
                key: Some(Bytes::from_static(b"k")),
                value: None,
                timestamp: 42,
                headers: vec![Header {
                    key: "h".into(),
                    value: Some(Bytes::from_static(b"v")),
                }],
            },
            Record {
                key: None,
                value: Some(Bytes::from_static(b"value")),
                timestamp: -1,
                headers: vec![],
            },
        ];
        let mut w = PayloadWriter::new();
        w.create_topic("t", 3, &[1, 2, 3]);
        w.records("t", 1, 7, &records);
        w.commit("g", "t", 1, 9, "");
        w.commit("g", "t", 2, 4, "partitionTime=7");
        w.topic_config("t", &[("cleanup.policy", "compact".to_string())]);
        w.moved_records("t", 0, 3, &records[..1]);
        w.delete_topic("t");
        let payload = w.finish();
        let ops = decode_ops(&payload).unwrap();
        assert_eq!(ops.len(), 7);
        assert_eq!(ops[6], Op::DeleteTopic { name: "t".into() });
        assert_eq!(
            ops[0],
            Op::CreateTopic {
                name: "t".into(),
                partitions: 3,
                next_offsets: vec![1, 2, 3]
            }
        );
        let Op::Records {
            base_offset,
            count,
            body,
            ..
        } = &ops[1]
        else {
            panic!("expected records, got {:?}", ops[1]);
        };
        assert_eq!((*base_offset, *count), (7, 2));
        let body = Bytes::copy_from_slice(&payload[body.clone()]);
        assert_eq!(decode_records(&body, *count).unwrap(), records);
        assert!(matches!(&ops[2], Op::Commit { offset: 9, metadata, .. } if metadata.is_empty()));
        assert_eq!(
            ops[3],
            Op::Commit {
                group: "g".into(),
                topic: "t".into(),
                partition: 2,
                offset: 4,
                metadata: "partitionTime=7".into()
            }
        );
        assert_eq!(
            ops[4],
            Op::TopicConfig {
                name: "t".into(),
                properties: vec![("cleanup.policy".into(), "compact".into())]
            }
        );
        assert!(matches!(
            &ops[5],
            Op::Records {
                base_offset: 3,
                count: 1,
                moved: true,
                ..
            }
        ));
    }

    #[test]
    fn truncated_payload_is_malformed() {
        let mut w = PayloadWriter::new();
        w.commit("group", "topic", 0, 1, "");
        let payload = w.finish();
        assert!(decode_ops(&payload[..payload.len() - 3]).is_err());
    }
}
