//! Joins of a stream with a table, a global table or another stream, and of two tables.

use millrace_python::convert::{bytes_to_py, py_to_bytes};
use millrace_stores::keys;

use crate::topology::JoinKind;

use super::*;

impl<'py> BatchProcessor<'_, 'py> {
    /// Joins a stream record with the table's value for its key; records with a null key or
    /// value are dropped, and so are records with no table value unless the join is a left
    /// join, as in Kafka Streams.
    pub(super) fn table_join(
        &mut self,
        node: &OpNode,
        join: &TableJoin,
        mut rec: Rec<'py>,
    ) -> Result<(), Failure> {
        let py = self.py;
        let slot = &self.topology.stores[join.store];
        let consume = |e| Self::consume_failure(node, e);
        if rec.value.is_null() {
            return Ok(());
        }
        let Some(key) = rec
            .key
            .to_bytes(&node.key_type, &slot.key_type)
            .map_err(consume)?
        else {
            return Ok(());
        };
        let entry = self.in_store(node, join.store, |s| s.get(&key))?;
        let table_value = match entry.as_ref().and_then(split_timestamped) {
            Some((_, value)) => self.stored_py(node, &value, &slot.value_type)?,
            None if join.left => py.None().into_bound(py),
            None => return Ok(()),
        };
        let [key, value] = self.key_value(node, &mut rec)?;
        rec.value = Datum::Py(self.join_values(node, join.joiner, [key, value, table_value])?);
        self.forward(node, rec)
    }
}

impl<'py> BatchProcessor<'_, 'py> {
    /// Joins a stream record with the global table's value for the key its mapper picks;
    /// records with a null value are dropped, and so are those with no global value unless the
    /// join is a left join.
    pub(super) fn global_join(
        &mut self,
        node: &OpNode,
        join: &GlobalJoin,
        mut rec: Rec<'py>,
    ) -> Result<(), Failure> {
        let py = self.py;
        if rec.value.is_null() {
            return Ok(());
        }
        let global = &self.topology.globals[join.global];
        let [key, value] = self.key_value(node, &mut rec)?;
        let lookup = self.call(join.mapper, &[key.clone(), value.clone()], &node.name)?;
        let mapper = &self.topology.functions[join.mapper].name;
        let lookup = py_to_bytes(&lookup, &global.key_type)
            .map_err(|e| Self::process_failure(node, mapper, e.to_string()))?;
        let found = lookup.and_then(|k| global.get(&k));
        let global_value = match found {
            Some(bytes) => bytes_to_py(py, Some(&bytes), &global.value_type)
                .map_err(|e| Self::consume_failure(node, e))?,
            None if join.left => py.None().into_bound(py),
            None => return Ok(()),
        };
        rec.value = Datum::Py(self.join_values(node, join.joiner, [key, value, global_value])?);
        self.forward(node, rec)
    }
}

impl<'py> BatchProcessor<'_, 'py> {
    /// A record of one side of a stream-stream join: kept for the other side's later records,
    /// and joined with the other side's records of its key at most the time difference away
    /// (the result's time is the later of the two). Records with a null key or value are
    /// dropped, and so are records older than stream time minus the time difference and
    /// grace, as in Kafka Streams.
    pub(super) fn stream_join(
        &mut self,
        node: &OpNode,
        side: &StreamJoinSide,
        mut rec: Rec<'py>,
    ) -> Result<(), Failure> {
        let topology = self.topology;
        let (this_slot, other_slot) = (
            &topology.stores[side.this_store],
            &topology.stores[side.other_store],
        );
        let consume = |e| Self::consume_failure(node, e);
        if rec.value.is_null() {
            return Ok(());
        }
        let Some(key) = rec
            .key
            .to_bytes(&node.key_type, &this_slot.key_type)
            .map_err(consume)?
        else {
            return Ok(());
        };
        let time = rec.timestamp;
        if time
            .saturating_add(side.time_difference)
            .saturating_add(side.grace)
            < self.stream_time()
        {
            self.late_records += 1;
            return Ok(());
        }
        // Records whose window closed go first, as Kafka Streams emits them before joining.
        if let Some(unmatched) = side.unmatched {
            self.emit_unmatched(node, side, unmatched, &rec.headers)?;
        }
        let Some(value) = rec
            .value
            .to_bytes(&node.value_type, &this_slot.value_type)
            .map_err(consume)?
        else {
            return Ok(());
        };
        let seq = self.fresh_sequence(node, side.this_store, &key, time)?;
        let stored = keys::window_key(&key, time, seq);
        self.store_put(
            node,
            side.this_store,
            stored,
            Some(timestamped(time, &value)),
        )?;
        // The other side keeps keys in its own type.
        let Some(other_key) = rec
            .key
            .to_bytes(&node.key_type, &other_slot.key_type)
            .map_err(consume)?
        else {
            return Ok(());
        };
        let lower = keys::window_lower_bound(&other_key, time.saturating_sub(side.time_difference));
        let upper = keys::window_upper_bound(&other_key, time.saturating_add(side.time_difference));
        let matches = self.in_store(node, side.other_store, |s| s.range(&lower, &upper))?;
        let matched = !matches.is_empty();
        for (other_stored, entry) in matches {
            let Some((other_time, other_value)) = split_timestamped(&entry) else {
                continue;
            };
            // A match of a record waiting for its window to close: it no longer waits.
            if let (Some(unmatched), Some((other_key, _, other_seq))) =
                (side.unmatched, keys::parse_window_key(&other_stored))
            {
                let waiting =
                    keys::time_ordered_key(other_time, side_tag(!side.left), other_seq, other_key);
                self.store_put(node, unmatched, waiting, None)?;
            }
            let other = self.stored_py(node, &other_value, &other_slot.value_type)?;
            let [key_py, this] = self.key_value(node, &mut rec)?;
            let (value1, value2) = if side.left {
                (this, other)
            } else {
                (other, this)
            };
            let joined = self.join_values(node, side.joiner, [key_py, value1, value2])?;
            let out = Rec {
                key: rec.key.clone(),
                value: Datum::Py(joined),
                old: Datum::Null,
                timestamp: time.max(other_time),
                headers: rec.headers.clone(),
            };
            self.forward(node, out)?;
        }
        let waits = match side.kind {
            JoinKind::Inner => false,
            JoinKind::Left => side.left,
            JoinKind::Outer => true,
        };
        let Some(unmatched) = side.unmatched.filter(|_| waits && !matched) else {
            return Ok(());
        };
        // A record whose window has already passed (it came out of order) can meet no later
        // record: joined with None at once.
        if time.saturating_add(side.time_difference) < self.stream_time() {
            let [key_py, this] = self.key_value(node, &mut rec)?;
            let unmatched = Unmatched {
                key: key_py,
                value: this,
                left: side.left,
                time,
            };
            return self.join_with_none(node, side, unmatched, &rec.headers);
        }
        let waiting = keys::time_ordered_key(time, side_tag(side.left), seq, &key);
        self.store_put(node, unmatched, waiting, Some(value))
    }

    /// A sequence number that tells a record apart from the key's other records of the same
    /// time in a window store: the task's next one, past any a restored store already holds
    /// (the counter starts again with each run).
    pub(super) fn fresh_sequence(
        &mut self,
        node: &OpNode,
        store: StoreId,
        key: &[u8],
        time: i64,
    ) -> Result<u32, Failure> {
        loop {
            self.task.state.record_sequence = self.task.state.record_sequence.wrapping_add(1);
            let seq = self.task.state.record_sequence;
            let taken = self.in_store(node, store, |s| s.get(&keys::window_key(key, time, seq)))?;
            if taken.is_none() {
                return Ok(seq);
            }
        }
    }

    /// leftJoin and outerJoin of two streams, as Kafka Streams 3.x: a record that met no
    /// match is joined with None once its window closes (stream time past its time plus the
    /// time difference and grace), oldest first (at one time, the right stream's first).
    fn emit_unmatched(
        &mut self,
        node: &OpNode,
        side: &StreamJoinSide,
        unmatched: StoreId,
        headers: &[Header],
    ) -> Result<(), Failure> {
        let closed_before = self
            .stream_time()
            .saturating_sub(side.time_difference)
            .saturating_sub(side.grace);
        let lower = keys::time_ordered_key(i64::MIN, 0, 0, &[]);
        let upper = keys::time_ordered_key(closed_before, u8::MAX, u32::MAX, &[]);
        let due = self.in_store(node, unmatched, |s| s.range(&lower, &upper))?;
        let (left_store, right_store) = match side.left {
            true => (side.this_store, side.other_store),
            false => (side.other_store, side.this_store),
        };
        for (waiting, value) in due {
            let Some((time, tag, _, key)) = keys::parse_time_ordered_key(&waiting) else {
                continue;
            };
            if time >= closed_before {
                break;
            }
            let left = tag == side_tag(true);
            let slot = &self.topology.stores[if left { left_store } else { right_store }];
            let unmatched_record = Unmatched {
                key: self.stored_py(node, key, &slot.key_type)?,
                value: self.stored_py(node, &value, &slot.value_type)?,
                left,
                time,
            };
            self.store_put(node, unmatched, waiting.clone(), None)?;
            self.join_with_none(node, side, unmatched_record, headers)?;
        }
        Ok(())
    }

    /// Joins a record that met no match with None (on its side's place) and passes it on at
    /// its own time.
    fn join_with_none(
        &mut self,
        node: &OpNode,
        side: &StreamJoinSide,
        record: Unmatched<'py>,
        headers: &[Header],
    ) -> Result<(), Failure> {
        let none = self.py.None().into_bound(self.py);
        let (value1, value2) = match record.left {
            true => (record.value, none),
            false => (none, record.value),
        };
        let joined = self.join_values(node, side.joiner, [record.key.clone(), value1, value2])?;
        let out = Rec {
            key: Datum::Py(record.key),
            value: Datum::Py(joined),
            old: Datum::Null,
            timestamp: record.time,
            headers: headers.to_vec(),
        };
        self.forward(node, out)
    }
}

/// A stream-join record that met no match: its key and value, side and time.
struct Unmatched<'py> {
    key: Bound<'py, PyAny>,
    value: Bound<'py, PyAny>,
    left: bool,
    time: i64,
}

/// The tag of a join side's records in the unmatched store: at one time, the right stream's
/// come first, as in Kafka Streams' outer join store.
fn side_tag(left: bool) -> u8 {
    if left { 1 } else { 0 }
}

impl<'py> BatchProcessor<'_, 'py> {
    /// An update of one table of a table-table join, joined with the other table's value for
    /// its key, as Kafka Streams' KTable-KTable joins: the joined table's new value comes from
    /// the update's new value, its old value (where a node downstream reads it) from the
    /// update's old one. An inner join passes nothing on while the other table lacks the key,
    /// a left join nothing for right-table updates while the left table lacks it, and a side
    /// missing from a left or outer join is None to the joiner, which KSML calls with a None
    /// key. A joined value that cannot exist goes on as null (a deletion).
    pub(super) fn table_table_join(
        &mut self,
        node: &OpNode,
        side: &TableTableJoinSide,
        mut rec: Rec<'py>,
    ) -> Result<(), Failure> {
        let py = self.py;
        let other_slot = &self.topology.stores[side.other_store];
        let consume = |e| Self::consume_failure(node, e);
        if rec.value.is_null() && rec.old.is_null() {
            return Ok(());
        }
        let Some(key) = rec
            .key
            .to_bytes(&node.key_type, &other_slot.key_type)
            .map_err(consume)?
        else {
            return Ok(());
        };
        let found = self.in_store(node, side.other_store, |s| s.get(&key))?;
        let other = found.as_ref().and_then(split_timestamped);
        let other_required = match side.kind {
            JoinKind::Inner => true,
            JoinKind::Left => !side.left,
            JoinKind::Outer => false,
        };
        if other.is_none() && other_required {
            return Ok(());
        }
        let timestamp = other
            .as_ref()
            .map_or(rec.timestamp, |(time, _)| rec.timestamp.max(*time));
        let other_value = match &other {
            Some((_, bytes)) => self.stored_py(node, bytes, &other_slot.value_type)?,
            None => py.None().into_bound(py),
        };
        // Whether this side's value joins when it is null: in a left join's right table and
        // in an outer join with the other table's value present.
        let null_joins = match side.kind {
            JoinKind::Inner => false,
            JoinKind::Left => !side.left,
            JoinKind::Outer => other.is_some(),
        };
        let join = |this: &mut Datum<'py>| -> Result<Datum<'py>, Failure> {
            if this.is_null() && !null_joins {
                return Ok(Datum::Null);
            }
            let this = this.as_py(py, &node.value_type).map_err(consume)?;
            let (value1, value2) = match side.left {
                true => (this, other_value.clone()),
                false => (other_value.clone(), this),
            };
            let joined = self.join_values(
                node,
                side.joiner,
                [py.None().into_bound(py), value1, value2],
            )?;
            Ok(Datum::Py(joined))
        };
        let value = join(&mut rec.value)?;
        let old = match node.sends_old_values {
            true => join(&mut rec.old)?,
            false => Datum::Null,
        };
        let out = Rec {
            key: rec.key,
            value,
            old,
            timestamp,
            headers: rec.headers,
        };
        self.forward(node, out)
    }
}
