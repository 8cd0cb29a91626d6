//! Foreign-key joins of two tables, in Kafka Streams' way: subscriptions to the other table's
//! keys go through a registration topic, answers come back through a response topic.
//!
//! A registration record is keyed by the foreign key and holds `instruction, hash of this
//! table's value, this table's key`; a response record is keyed by this table's key and holds
//! `hash, 1 and the other table's value` (or `hash, 0` when the other table lacks the key).

use std::ops::Bound as Range;

use bytes::{BufMut, Bytes, BytesMut};
use millrace_python::convert::py_to_bytes;
use millrace_stores::keys;

use super::*;
use crate::topology::ForeignKeyPart;

/// A registration: drop the subscription, no answer.
const UNSUBSCRIBE: u8 = 0;
/// A registration: keep the subscription and answer it.
const SUBSCRIBE: u8 = 1;
/// A registration: keep the subscription, and answer only when the other table holds the
/// foreign key (an inner join's new key: nothing to retract otherwise).
const SUBSCRIBE_IF_FOUND: u8 = 2;

/// The hash a subscription carries of this table's value, to tell a stale answer (one for a
/// value since replaced) from a current one: FNV-1a, fixed so that it stays the same across
/// restarts and builds; 0 for no value.
fn value_hash(value: Option<&[u8]>) -> u64 {
    let Some(bytes) = value else { return 0 };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash | 1
}

fn registration(instruction: u8, hash: u64, key: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(9 + key.len());
    out.put_u8(instruction);
    out.put_u64(hash);
    out.put_slice(key);
    out.freeze()
}

fn response(hash: u64, other: Option<&[u8]>) -> Bytes {
    let mut out = BytesMut::with_capacity(9 + other.map_or(0, <[u8]>::len));
    out.put_u64(hash);
    match other {
        Some(value) => {
            out.put_u8(1);
            out.put_slice(value);
        }
        None => out.put_u8(0),
    }
    out.freeze()
}

impl<'py> BatchProcessor<'_, 'py> {
    pub(super) fn foreign_key_join(
        &mut self,
        node: &OpNode,
        part: &ForeignKeyPart,
        rec: Rec<'py>,
    ) -> Result<(), Failure> {
        match part {
            ForeignKeyPart::Subscribe {
                extractor,
                this_store,
                other_store,
                left,
            } => self.subscribe(node, *extractor, (*this_store, *other_store), *left, rec),
            ForeignKeyPart::Register {
                subscriptions,
                other_store,
            } => self.register(node, *subscriptions, *other_store, rec),
            ForeignKeyPart::OtherUpdate {
                subscriptions,
                other_store,
            } => self.answer_subscribers(node, *subscriptions, *other_store, rec),
            ForeignKeyPart::Resolve {
                this_store,
                other_store,
                joiner,
                left,
            } => self.resolve(node, *this_store, *other_store, *joiner, *left, rec),
        }
    }

    /// The foreign key the extractor picks from a value, in the other table's key bytes.
    fn foreign_key(
        &self,
        node: &OpNode,
        extractor: FnId,
        other_store: StoreId,
        value: &mut Datum<'py>,
    ) -> Result<Option<Bytes>, Failure> {
        if value.is_null() {
            return Ok(None);
        }
        let value = value
            .as_py(self.py, &node.value_type)
            .map_err(|e| Self::consume_failure(node, e))?;
        let picked = self.call(extractor, &[value], &node.name)?;
        let key_type = &self.topology.stores[other_store].key_type;
        py_to_bytes(&picked, key_type)
            .map(|b| b.map(Bytes::from))
            .map_err(|e| {
                Self::process_failure(
                    node,
                    &self.topology.functions[extractor].name,
                    e.to_string(),
                )
            })
    }

    /// An update of this table: unsubscribes its key from the old foreign key, subscribes it
    /// to the new one; with no new foreign key (or a deletion) it is answered at once, where
    /// there is a result to give or retract (Kafka Streams 3.7's handling of a null foreign
    /// key).
    fn subscribe(
        &mut self,
        node: &OpNode,
        extractor: FnId,
        (this_store, other_store): (StoreId, StoreId),
        left: bool,
        mut rec: Rec<'py>,
    ) -> Result<(), Failure> {
        if rec.value.is_null() && rec.old.is_null() {
            return Ok(());
        }
        let this_slot = &self.topology.stores[this_store];
        let Some((key, value)) = Self::stored_pair(node, this_slot, &rec)? else {
            return Ok(());
        };
        let hash = value_hash(value.as_deref());
        let had_value = !rec.old.is_null();
        let new_key = self.foreign_key(node, extractor, other_store, &mut rec.value)?;
        let old_key = self.foreign_key(node, extractor, other_store, &mut rec.old)?;
        let (registrations, responses) = (node.children[0], node.children[1]);
        let send = |key: Bytes, value: Bytes| Rec {
            key: Datum::Raw(key),
            value: Datum::Raw(value),
            old: Datum::Null,
            timestamp: rec.timestamp,
            headers: rec.headers.clone(),
        };
        if let Some(old_key) = old_key.filter(|old| Some(old) != new_key.as_ref()) {
            self.node(
                registrations,
                send(old_key, registration(UNSUBSCRIBE, 0, &key)),
            )?;
        }
        match new_key {
            Some(new_key) => {
                let instruction = match left || had_value {
                    true => SUBSCRIBE,
                    false => SUBSCRIBE_IF_FOUND,
                };
                let subscription = registration(instruction, hash, &key);
                self.node(registrations, send(new_key, subscription))
            }
            None if left || had_value => self.node(responses, send(key, response(hash, None))),
            None => Ok(()),
        }
    }

    /// A subscription read back: kept (or dropped), and answered with the other table's value.
    fn register(
        &mut self,
        node: &OpNode,
        subscriptions: StoreId,
        other_store: StoreId,
        rec: Rec<'py>,
    ) -> Result<(), Failure> {
        let (Datum::Raw(foreign_key) | Datum::Decoded(foreign_key, _)) = &rec.key else {
            return Ok(());
        };
        let (Datum::Raw(body) | Datum::Decoded(body, _)) = &rec.value else {
            return Ok(());
        };
        let (Some(&instruction), Some(hash)) = (body.first(), body.get(1..9)) else {
            return Ok(());
        };
        let hash = u64::from_be_bytes(hash.try_into().expect("eight bytes"));
        let key = body.slice(9..);
        let mut subscription = keys::key_prefix(foreign_key);
        subscription.put_slice(&key);
        if instruction == UNSUBSCRIBE {
            return self.store_put(node, subscriptions, subscription.freeze(), None);
        }
        // The subscription's hash and time, for answers to the other table's updates.
        let entry = timestamped(rec.timestamp, &hash.to_be_bytes());
        self.store_put(node, subscriptions, subscription.freeze(), Some(entry))?;
        let other = self.in_store(node, other_store, |s| s.get(foreign_key))?;
        let other = other.as_ref().and_then(split_timestamped);
        if other.is_none() && instruction == SUBSCRIBE_IF_FOUND {
            return Ok(());
        }
        let timestamp = other
            .as_ref()
            .map_or(rec.timestamp, |(time, _)| rec.timestamp.max(*time));
        let answer = response(hash, other.as_ref().map(|(_, value)| value.as_ref()));
        let out = Rec {
            key: Datum::Raw(key),
            value: Datum::Raw(answer),
            old: Datum::Null,
            timestamp,
            headers: rec.headers,
        };
        self.forward(node, out)
    }

    /// An update of the other table: answered to every key subscribed to it.
    fn answer_subscribers(
        &mut self,
        node: &OpNode,
        subscriptions: StoreId,
        other_store: StoreId,
        rec: Rec<'py>,
    ) -> Result<(), Failure> {
        let other_slot = &self.topology.stores[other_store];
        let Some((foreign_key, value)) = Self::stored_pair(node, other_slot, &rec)? else {
            return Ok(());
        };
        let prefix = keys::key_prefix(&foreign_key).freeze();
        let after = keys::prefix_end(&prefix);
        let upper = match &after {
            Some(after) => Range::Excluded(after.as_slice()),
            None => Range::Unbounded,
        };
        let subscribers = self.in_store(node, subscriptions, |s| {
            s.scan(Range::Included(prefix.as_ref()), upper)
        })?;
        for (subscription, entry) in subscribers {
            let Some((since, hash)) = split_timestamped(&entry) else {
                continue;
            };
            let Ok(hash) = <[u8; 8]>::try_from(hash.as_ref()) else {
                continue;
            };
            let out = Rec {
                key: Datum::Raw(subscription.slice(prefix.len()..)),
                value: Datum::Raw(response(u64::from_be_bytes(hash), value.as_deref())),
                old: Datum::Null,
                timestamp: rec.timestamp.max(since),
                headers: rec.headers.clone(),
            };
            self.forward(node, out)?;
        }
        Ok(())
    }

    /// An answer read back: joined with this table's current value, unless that value changed
    /// since it subscribed. A key this table no longer holds, or (inner join) one whose
    /// foreign key the other table lacks, goes on as a deletion.
    fn resolve(
        &mut self,
        node: &OpNode,
        this_store: StoreId,
        other_store: StoreId,
        joiner: FnId,
        left: bool,
        rec: Rec<'py>,
    ) -> Result<(), Failure> {
        let py = self.py;
        let (Datum::Raw(key) | Datum::Decoded(key, _)) = &rec.key else {
            return Ok(());
        };
        let (Datum::Raw(body) | Datum::Decoded(body, _)) = &rec.value else {
            return Ok(());
        };
        let (Some(hash), Some(&present)) = (body.get(..8), body.get(8)) else {
            return Ok(());
        };
        let hash = u64::from_be_bytes(hash.try_into().expect("eight bytes"));
        let current = self.in_store(node, this_store, |s| s.get(key))?;
        let current = current.as_ref().and_then(split_timestamped).map(|(_, v)| v);
        if value_hash(current.as_deref()) != hash {
            return Ok(());
        }
        let this_slot = &self.topology.stores[this_store];
        let other_slot = &self.topology.stores[other_store];
        let decode = |bytes: &[u8], ty: &DataType| self.stored_py(node, bytes, ty);
        let other = match present {
            1 => Some(decode(&body[9..], &other_slot.value_type)?),
            _ => None,
        };
        let value = match (current, other) {
            (None, _) => Datum::Null,
            (Some(_), None) if !left => Datum::Null,
            (Some(this), other) => {
                let this = decode(&this, &this_slot.value_type)?;
                let other = other.unwrap_or_else(|| py.None().into_bound(py));
                let none = py.None().into_bound(py);
                Datum::Py(self.join_values(node, joiner, [none, this, other])?)
            }
        };
        let key_py = decode(key, &this_slot.key_type)?;
        let out = Rec {
            key: Datum::Py(key_py),
            value,
            old: Datum::Null,
            timestamp: rec.timestamp,
            headers: rec.headers,
        };
        self.forward(node, out)
    }
}
