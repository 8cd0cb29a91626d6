//! Reading only the members of a record that rows need.

use super::flat::{plain_name, read_flat};
use super::json::{Member, Members, parse_object};
use super::{KafkaColumns, ParseError, RecordColumn, RecordMeta};
use crate::spec::InputFormat;

/// Reads only the named members of records that are plain JSON objects, in the order named,
/// their text borrowed from the record: for rows that need no other column, which is faster
/// than reading whole input rows. With the kafka format, names of the record's timestamp,
/// topic, key and header columns read those as the row reader does.
#[derive(Debug, Clone)]
pub struct MemberReader {
    /// Each name once (a name repeated could take either member's value).
    names: Vec<String>,
    /// The names (by place) that the kafka format sets from the record instead.
    from_record: Vec<(usize, RecordColumn)>,
    /// Whether flat records are read from their bytes: every name is plain.
    flat: bool,
}

/// An emptied vector of members, for records that live another while: the same allocation,
/// so a reader of many records allocates once. (The standard library collects a vector's
/// items into a vector of items of the same size in its memory; it does not promise to, and
/// `recycled_members_keep_their_memory` tells if it stops. With no items, nothing is
/// converted.)
pub fn recycle<'b>(mut values: Vec<Member<'_>>) -> Vec<Member<'b>> {
    values.clear();
    values.into_iter().map(|_| Member::Null).collect()
}

impl MemberReader {
    /// A reader of these members, when the format reads records as plain JSON objects (json
    /// without flattenSpec fields, discovering columns, alone or as the value of the kafka
    /// format without a keyFormat): None for every other format.
    pub fn new(format: &InputFormat, names: Vec<String>) -> Option<MemberReader> {
        let plain_json = |format: &InputFormat| match format {
            InputFormat::Json { flatten_spec, .. } => flatten_spec
                .as_ref()
                .is_none_or(|f| f.use_field_discovery && f.fields.is_empty()),
            _ => false,
        };
        let kafka = match format {
            InputFormat::Kafka {
                value_format,
                key_format: None,
                ..
            } if plain_json(value_format) => Some(KafkaColumns::new(format)),
            _ if plain_json(format) => None,
            _ => return None,
        };
        let from_record = kafka.map_or_else(Vec::new, |kafka| {
            let sources = names.iter().enumerate();
            sources
                .filter_map(|(place, name)| Some((place, kafka.source(name)?)))
                .collect()
        });
        debug_assert!(
            names
                .iter()
                .enumerate()
                .all(|(i, n)| !names[..i].contains(n)),
            "member names are unique"
        );
        let flat = names.iter().all(|name| plain_name(name));
        Some(MemberReader {
            names,
            from_record,
            flat,
        })
    }

    /// The named members' values (null when missing): read from the record's bytes when it
    /// is a flat object of plain values and every name is plain (see [`read_flat`]), by
    /// serde otherwise.
    pub fn read<'a>(
        &self,
        record: &'a [u8],
        meta: &RecordMeta<'a>,
    ) -> Result<Vec<Member<'a>>, ParseError> {
        let mut values = Vec::new();
        self.read_with(record, meta, self.flat, &mut values)?;
        Ok(values)
    }

    /// [`MemberReader::read`] into `values` (whatever it held is replaced), so a caller
    /// reading many records reuses one vector instead of allocating one per record.
    pub fn read_into<'a>(
        &self,
        record: &'a [u8],
        meta: &RecordMeta<'a>,
        values: &mut Vec<Member<'a>>,
    ) -> Result<(), ParseError> {
        self.read_with(record, meta, self.flat, values)
    }

    /// [`MemberReader::read`] by serde alone: what the flat reader must agree with.
    pub(crate) fn read_parsed<'a>(
        &self,
        record: &'a [u8],
        meta: &RecordMeta<'a>,
    ) -> Result<Vec<Member<'a>>, ParseError> {
        let mut values = Vec::new();
        self.read_with(record, meta, false, &mut values)?;
        Ok(values)
    }

    /// The members, tried flat first when `flat` says so.
    fn read_with<'a>(
        &self,
        record: &'a [u8],
        meta: &RecordMeta<'a>,
        flat: bool,
        values: &mut Vec<Member<'a>>,
    ) -> Result<(), ParseError> {
        values.clear();
        values.resize(self.names.len(), Member::Null);
        if !flat || read_flat(record, &self.names, values).is_none() {
            // A flat read given up on may have set some.
            values.fill(Member::Null);
            let named = Members::Named {
                names: &self.names,
                values,
            };
            parse_object(record, named)?;
        }
        self.set_from_record(values, meta);
        Ok(())
    }

    /// Sets the members the kafka format takes from the record's metadata.
    fn set_from_record<'a>(&self, values: &mut [Member<'a>], meta: &RecordMeta<'a>) {
        for (place, column) in &self.from_record {
            if let Some(value) = column.value(meta) {
                values[*place] = value;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use std::borrow::Cow;

    use super::*;
    use crate::input::tests::{META, reader};

    #[test]
    fn recycled_members_keep_their_memory() {
        let text = String::from("borrowed");
        let values = vec![Member::Text(Cow::Borrowed(&text)); 8];
        let (capacity, memory) = (values.capacity(), values.as_ptr() as usize);
        let recycled: Vec<Member<'static>> = recycle(values);
        assert!(recycled.is_empty());
        assert_eq!(
            (recycled.capacity(), recycled.as_ptr() as usize),
            (capacity, memory)
        );
    }

    /// Flat records, each a shape the flat reader reads itself.
    const FLAT: [&[u8]; 7] = [
        br#"{"time":"2025-01-01T00:00:00.000","username":"gus","post_title":"NBW:'UP9,a8D;x","views":17092,"upvotes":85,"comments":-9,"edited":"True"}"#,
        b" { \"username\" : \"caf\xc3\xa9 \xf0\x9f\x98\x80\" ,\"views\":0, \"ratio\": -0.5e-3, \"edited\": false, \"x\": null }\n",
        br#"{"views": -0, "upvotes": 123456789012345678, "comments": 1234567890123456789, "ratio": 1E2}"#,
        br#"{"views": 18446744073709551616, "upvotes": -9223372036854775809, "username": "", "edited": true}"#,
        br#"{"username": "first", "skipped": 1.5, "username": "second", "views": 3.0}"#,
        br#"{}"#,
        // Text ending where UTF-8 follows in the same eight bytes.
        b"{\"username\":\"ab\",\"caf\xc3\xa9\":1}",
    ];

    #[test]
    fn flat_records_are_read_from_their_bytes_as_serde_reads_them() {
        let names: Vec<String> = [
            "time", "username", "views", "upvotes", "comments", "edited", "ratio",
        ]
        .map(String::from)
        .into();
        let format = serde_json::from_value(json!({"type": "json"})).unwrap();
        let members = MemberReader::new(&format, names.clone()).unwrap();
        assert!(
            members.flat,
            "plain names are matched on the records' bytes"
        );
        for record in FLAT {
            let mut values = vec![Member::Null; names.len()];
            assert!(
                read_flat(record, &names, &mut values).is_some(),
                "read flat: {}",
                String::from_utf8_lossy(record)
            );
            assert_eq!(
                Ok(values),
                members.read_parsed(record, &META),
                "{}",
                String::from_utf8_lossy(record)
            );
        }
        let read = members.read(FLAT[0], &META).unwrap();
        assert_eq!(read[2], Member::Long(17092));
        assert_eq!(read[4], Member::Long(-9));
        assert!(matches!(&read[1], Member::Text(Cow::Borrowed("gus"))));
        let read = members.read(FLAT[2], &META).unwrap();
        assert!(
            matches!(read[2], Member::Double(d) if d == 0.0 && d.is_sign_negative()),
            "-0"
        );
        assert_eq!(read[3], Member::Long(123456789012345678));
        assert_eq!(read[4], Member::Long(1234567890123456789));
        assert_eq!(read[6], Member::Double(100.0));
        // Names a record spells with escapes are looked for by serde alone.
        let odd_names = MemberReader::new(&format, vec!["a\"b".into(), "tab\t".into()]).unwrap();
        assert!(!odd_names.flat);
        let read = odd_names
            .read(br#"{"a\"b": 1, "tab\t": 2}"#, &META)
            .unwrap();
        assert_eq!(read, [Member::Long(1), Member::Long(2)]);
        // Records of other shapes, valid or not, are left to serde.
        for other in [
            &br#"{"username": "tab\there"}"#[..],
            br#"{"esc\u0061ped": 1}"#,
            br#"{"tags": [1]}"#,
            br#"{"geo": {"city": "Oslo"}}"#,
            b"{\"username\": \"\xff\"}",
            b"{\"username\": \"line\nbreak\"}",
            br#"{"views": 01}"#,
            br#"{"views": 1.}"#,
            br#"{"views": 1e400}"#,
            br#"{"views": -}"#,
            br#"{"views": 1,}"#,
            br#"{"views": 1} x"#,
            br#"{"views" 1}"#,
            br#"{"views": tru}"#,
            br#"[1]"#,
            b"",
        ] {
            let mut values = vec![Member::Null; names.len()];
            assert!(
                read_flat(other, &names, &mut values).is_none(),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn damaged_records_read_the_same_by_bytes_and_by_serde() {
        // "user" is a prefix of a name in the records, "" a name no record has.
        let names: Vec<String> = [
            "time", "user", "username", "views", "comments", "edited", "ratio", "x", "",
        ]
        .map(String::from)
        .into();
        let format = serde_json::from_value(json!({"type": "json"})).unwrap();
        let members = MemberReader::new(&format, names).unwrap();
        // A fixed xorshift sequence: the same damage every run.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut random = move |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        // Bytes of JSON's syntax, escapes, whitespace, DEL, and pieces of UTF-8: valid ones,
        // a surrogate, an overlong encoding.
        let odd = b"\"{}[],:-+09.eE tfnu\\\t\r\n\x01\x7f\xff\xc3\x80\xed\xa0\xc0\xe2\x82\xac";
        let mut flat_reads = 0;
        for record in FLAT {
            for _ in 0..3000 {
                let mut damaged = record.to_vec();
                for _ in 0..=random(3) {
                    let at = random(damaged.len() + 1);
                    let byte = odd[random(odd.len())];
                    match random(4) {
                        0 if at < damaged.len() => damaged[at] = byte,
                        1 => damaged.insert(at, byte),
                        2 if at < damaged.len() => drop(damaged.remove(at)),
                        _ => damaged.truncate(at),
                    }
                }
                let mut values = vec![Member::Null; members.names.len()];
                flat_reads +=
                    usize::from(read_flat(&damaged, &members.names, &mut values).is_some());
                assert_eq!(
                    members.read(&damaged, &META),
                    members.read_parsed(&damaged, &META),
                    "{}",
                    String::from_utf8_lossy(&damaged)
                );
            }
        }
        assert!(
            flat_reads > 1000,
            "damage that keeps the shape is read flat: {flat_reads}"
        );
    }

    #[test]
    fn members_read_alone_equal_the_rows_values() {
        let format = |f: serde_json::Value| serde_json::from_value::<InputFormat>(f).unwrap();
        // Records in the names' order, out of it, and breaking it after a match.
        let records = [
            &br#"{"user": "mia", "views": 3, "ratio": 0.5, "edited": true, "none": null}"#[..],
            br#"{"tags": [], "user": "ann", "absent": 1, "geo": null, "big": 2, "edited": "x"}"#,
            br#"{"user": "gus", "geo": {"city": "Oslo", "at": [1, 2.5]}, "tags": ["a", {"b": 1}]}"#,
            br#"{"big": 18446744073709551615, "neg": -9223372036854775808, "exp": 1e3}"#,
            br#"{"esc\u0061ped": "tab\there", "user": "first", "user": "second", "tags": 1}"#,
            br#"  {"unicode": "caf\u00e9 \ud83d\ude00", "edited": false}  "#,
            br#"{"kafka.topic": "from the value", "kafka.timestamp": 5, "h.dup": 1, "user": "u"}"#,
        ];
        let names: Vec<String> = [
            "tags", "user", "absent", "geo", "big", "edited", "unicode", "escaped",
        ]
        .map(String::from)
        .into();
        let kafka_names: Vec<String> = [
            "user",
            "kafka.timestamp",
            "kafka.topic",
            "kafka.key",
            "kafka.header.source",
            "kafka.header.empty",
            "kafka.header.absent",
        ]
        .map(String::from)
        .into();
        let no_key = RecordMeta { key: None, ..META };
        // Columns renamed to collide (the key's name is the topic's), a header twice, bytes
        // that are not UTF-8.
        let odd = RecordMeta {
            key: Some(b"\xffkey"),
            headers: &[
                ("dup", Some(b"first")),
                ("dup", Some(b"\xfesecond")),
                ("empty", None),
            ],
            ..META
        };
        let renamed = json!({"type": "kafka", "valueFormat": {"type": "json"},
            "keyColumnName": "kafka.topic", "headerColumnPrefix": "h.", "timestampColumnName": "h.dup"});
        let renamed_names: Vec<String> =
            ["kafka.topic", "h.dup", "h.empty", "kafka.timestamp", "user"]
                .map(String::from)
                .into();
        for (format_json, names, meta) in [
            (renamed.clone(), &renamed_names, &odd),
            (renamed, &renamed_names, &no_key),
            (json!({"type": "json"}), &names, &META),
            (
                json!({"type": "kafka", "valueFormat": {"type": "json"}}),
                &kafka_names,
                &META,
            ),
            (
                json!({"type": "kafka", "valueFormat": {"type": "json"}}),
                &kafka_names,
                &no_key,
            ),
        ] {
            let members = MemberReader::new(&format(format_json.clone()), names.clone()).unwrap();
            let rows = reader(format_json);
            for record in records {
                let row = &rows.read(record, meta).unwrap()[0];
                let expected: Vec<Member<'_>> = names
                    .iter()
                    .map(|n| row.get(n).map_or(Member::Null, Member::of))
                    .collect();
                let read = members.read(record, meta).unwrap();
                assert_eq!(read, expected, "{}", String::from_utf8_lossy(record));
            }
        }
        let members = MemberReader::new(&format(json!({"type": "json"})), names.clone()).unwrap();
        let read = members
            .read(br#"{"user": "gus", "tags": [1]}"#, &META)
            .unwrap();
        assert!(
            matches!(&read[1], Member::Text(Cow::Borrowed("gus"))),
            "plain text is borrowed from the record"
        );
        assert_eq!(read[0], Member::Text("[1]".into()));
        for (bad, why) in [
            (&b"[1]"[..], "expected a JSON object"),
            (b"\"text\"", "expected a JSON object"),
            (b"{\"user\": \"mia\"} trailing", "invalid JSON"),
            (b"{\"user\": }", "invalid JSON"),
            (b"{\"skipped\": [1, }", "invalid JSON"),
        ] {
            assert!(
                members.read(bad, &META).unwrap_err().0.starts_with(why),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // Members no row reads are skipped unchecked (as the compatibility page says): what
        // the row reader refuses inside them is no error here.
        let rows = reader(json!({"type": "json"}));
        for unchecked in [
            &br#"{"user": "x", "skipped": "\ud800"}"#[..],
            b"{\"skipped\": 1e400}",
        ] {
            assert!(rows.read(unchecked, &META).is_err());
            assert!(members.read(unchecked, &META).is_ok());
        }
        for other in [
            json!({"type": "csv", "columns": ["user"]}),
            json!({"type": "kafka", "valueFormat": {"type": "json"}, "keyFormat": {"type": "csv", "columns": ["id"]}}),
            json!({"type": "kafka", "valueFormat": {"type": "csv", "columns": ["user"]}}),
            json!({"type": "json", "flattenSpec": {"fields": [{"type": "root", "name": "user"}]}}),
            json!({"type": "json", "flattenSpec": {"useFieldDiscovery": false}}),
        ] {
            assert!(
                MemberReader::new(&format(other.clone()), names.clone()).is_none(),
                "{other}"
            );
        }
        assert!(
            MemberReader::new(&format(json!({"type": "json", "flattenSpec": {}})), names).is_some()
        );
    }
}
