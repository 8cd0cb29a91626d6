//! Tables kept in stores: count, reduce and aggregate (plain, time-windowed, session),
//! materialized tables, and the cache flush that sends their updates downstream at commits.

use bytes::Bytes;
use millrace_python::convert::bytes_to_py;
use millrace_stores::keys;

use super::*;

/// A count as a store keeps it (a big-endian long, as Kafka's long serializer writes it).
fn count_entry(count: i64) -> Bytes {
    Bytes::copy_from_slice(&count.to_be_bytes())
}

/// A count kept by [`count_entry`].
fn count_of(bytes: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(bytes.try_into().ok()?))
}

/// A table's update of one key, in the table store's types.
struct Update {
    value: Option<Bytes>,
    /// The key's value before, where known.
    old: Option<Bytes>,
    time: i64,
}

impl<'py> BatchProcessor<'_, 'py> {
    /// count, reduce or aggregate of one record, into each of its windows when windowed.
    /// Records with a null key or value are skipped (a grouped table's update with only an old
    /// value is not), and so are records for windows closed
    /// longer than the grace period, as in Kafka Streams.
    pub(super) fn aggregate(
        &mut self,
        node: &OpNode,
        aggregation: &Aggregation,
        mut rec: Rec<'py>,
    ) -> Result<(), Failure> {
        let slot = &self.topology.stores[aggregation.store];
        // A grouped table's update may only take an old value out.
        if rec.value.is_null() && (rec.old.is_null() || !aggregation.kind.of_grouped_table()) {
            return Ok(());
        }
        let key = rec
            .key
            .to_bytes(&node.key_type, &slot.key_type)
            .map_err(|e| Self::consume_failure(node, e))?;
        let Some(key) = key else {
            return Ok(());
        };
        let windows = match aggregation.windows {
            None => {
                if let Some(update) = self.update(node, aggregation, key.clone(), &mut rec)? {
                    self.forward_update(node, Datum::Raw(key), update, &rec.headers)?;
                }
                return Ok(());
            }
            Some(Windows::Session(sessions)) => {
                return self.aggregate_session(node, aggregation, sessions, key, rec);
            }
            Some(Windows::Sliding(sliding)) => {
                return self.aggregate_sliding(node, aggregation, sliding, key, rec);
            }
            Some(Windows::Time(windows)) => windows,
        };
        let close = self.stream_time() - windows.grace;
        for start in windows.starts_for(rec.timestamp) {
            let end = start + windows.size;
            if end <= close {
                self.late_records += 1;
                continue;
            }
            let stored = keys::window_key(&key, start, 0);
            if let Some(update) = self.update(node, aggregation, stored, &mut rec)? {
                let windowed = self.windowed_key(node, &slot.key_type, &key, start, end)?;
                self.forward_update(node, windowed, update, &rec.headers)?;
            }
        }
        Ok(())
    }

    /// Combines a record with the store's entry at `stored`; returns the update when it goes
    /// downstream now (a store without caching), None when it waits for the commit.
    fn update(
        &mut self,
        node: &OpNode,
        aggregation: &Aggregation,
        stored: Bytes,
        rec: &mut Rec<'py>,
    ) -> Result<Option<Update>, Failure> {
        let py = self.py;
        let slot = &self.topology.stores[aggregation.store];
        let current = self.in_store(node, aggregation.store, |s| s.get(&stored))?;
        let (old_time, old) = match current.as_ref().and_then(split_timestamped) {
            Some((time, value)) => (time, Some(value)),
            None => (i64::MIN, None),
        };
        let stored_value =
            |obj: Bound<'py, PyAny>, f: FnId| self.to_stored(node, &obj, &slot.value_type, f);
        let decode_old = |old: &Bytes| self.stored_py(node, old, &slot.value_type);
        let consume = |e| Self::consume_failure(node, e);
        let value: Option<Bytes> = match &aggregation.kind {
            AggregationKind::Count => Some(count_entry(
                old.as_deref().and_then(count_of).unwrap_or(0) + 1,
            )),
            AggregationKind::Reduce { reducer } => match &old {
                None => rec
                    .value
                    .to_bytes(&node.value_type, &slot.value_type)
                    .map_err(|e| Self::consume_failure(node, e))?,
                Some(old) => {
                    let aggregate = decode_old(old)?;
                    let value = rec
                        .value
                        .as_py(py, &node.value_type)
                        .map_err(|e| Self::consume_failure(node, e))?;
                    let reduced = self.call(*reducer, &[aggregate, value], &node.name)?;
                    stored_value(reduced, *reducer)?
                }
            },
            AggregationKind::Aggregate {
                initializer,
                aggregator,
                ..
            } => {
                let aggregate = match &old {
                    None => self.call(*initializer, &[], &node.name)?,
                    Some(old) => decode_old(old)?,
                };
                let [key, value] = self.key_value(node, rec)?;
                let result = self.call(*aggregator, &[key, value, aggregate], &node.name)?;
                stored_value(result, *aggregator)?
            }
            AggregationKind::TableCount => {
                let mut count = old.as_deref().and_then(count_of);
                if let Some(n) = count.filter(|_| !rec.old.is_null()) {
                    count = Some(n - 1);
                }
                if !rec.value.is_null() {
                    count = Some(count.unwrap_or(0) + 1);
                }
                count.map(count_entry)
            }
            AggregationKind::TableReduce { adder, subtractor } => {
                let mut aggregate = old.as_ref().map(decode_old).transpose()?;
                if !rec.old.is_null()
                    && let Some(so_far) = aggregate.take()
                {
                    let old_value = rec.old.as_py(py, &node.value_type).map_err(consume)?;
                    let taken = self.call(*subtractor, &[so_far, old_value], &node.name)?;
                    aggregate = Some(taken).filter(|a| !a.is_none());
                }
                if !rec.value.is_null() {
                    let value = rec.value.as_py(py, &node.value_type).map_err(consume)?;
                    aggregate = Some(match aggregate {
                        None => value,
                        Some(so_far) => self.call(*adder, &[so_far, value], &node.name)?,
                    });
                }
                match aggregate {
                    None => None,
                    Some(a) => stored_value(a, *adder)?,
                }
            }
            AggregationKind::TableAggregate {
                initializer,
                adder,
                subtractor,
            } => {
                let mut aggregate = old.as_ref().map(decode_old).transpose()?;
                let key = rec.key.as_py(py, &node.key_type).map_err(consume)?;
                if !rec.old.is_null()
                    && let Some(so_far) = aggregate.take()
                {
                    let old_value = rec.old.as_py(py, &node.value_type).map_err(consume)?;
                    let taken =
                        self.call(*subtractor, &[key.clone(), old_value, so_far], &node.name)?;
                    aggregate = Some(taken).filter(|a| !a.is_none());
                }
                if !rec.value.is_null() {
                    let so_far = match aggregate {
                        Some(so_far) => so_far,
                        None => self.call(*initializer, &[], &node.name)?,
                    };
                    let value = rec.value.as_py(py, &node.value_type).map_err(consume)?;
                    aggregate = Some(self.call(*adder, &[key, value, so_far], &node.name)?);
                }
                match aggregate {
                    None => None,
                    Some(a) => stored_value(a, *adder)?,
                }
            }
        };
        let time = old_time.max(rec.timestamp);
        let entry = value.as_ref().map(|v| timestamped(time, v));
        self.store_put(node, aggregation.store, stored, entry)?;
        Ok((!slot.spec.caching).then_some(Update { value, old, time }))
    }

    /// Passes a table's update of a key downstream (its old value where a node downstream
    /// reads it).
    fn forward_update(
        &mut self,
        node: &OpNode,
        key: Datum<'py>,
        update: Update,
        headers: &[Header],
    ) -> Result<(), Failure> {
        let old = match node.sends_old_values {
            true => Datum::from_bytes(update.old),
            false => Datum::Null,
        };
        let rec = Rec {
            key,
            value: Datum::from_bytes(update.value),
            old,
            timestamp: update.time,
            headers: headers.to_vec(),
        };
        self.forward(node, rec)
    }

    /// A windowed key as KSML shows it to Python: `{start, end, startTime, endTime, key}`.
    fn windowed_key(
        &self,
        node: &OpNode,
        key_type: &DataType,
        key: &[u8],
        start: i64,
        end: i64,
    ) -> Result<Datum<'py>, Failure> {
        let inner = bytes_to_py(self.py, Some(key), key_type)
            .map_err(|e| Self::consume_failure(node, e))?;
        crate::py_stores::windowed_key(inner, start, end)
            .map(Datum::Py)
            .map_err(|e| Self::process_failure(node, "windowed key", e.to_string()))
    }

    /// Sends downstream what cached aggregations of this task buffered since the last commit
    /// (the latest value of each key, as Kafka Streams' cache flush does), upstream tables
    /// first so that what they send reaches the caches after them, then what suppress nodes
    /// hold that is due. A failure downstream goes to the process error handler: with
    /// continueOnFail it is logged and the flush goes on.
    pub(super) fn flush_caches(&mut self, handling: &ErrorHandling) -> Result<(), Failure> {
        let topology = self.topology;
        for (node, store, windows) in topology.table_nodes() {
            let slot = &topology.stores[store];
            if !slot.spec.caching {
                continue;
            }
            let Ok(entries) = task_stores::with_store(store, |s| s.buffered()) else {
                continue;
            };
            for (stored, entry) in entries {
                // What went downstream at the last commit: needed to pass a deletion on, and
                // as the old value where a node downstream reads it.
                let committed = match entry.is_none() || node.sends_old_values {
                    true => task_stores::with_store(store, |s| s.get_committed(&stored))
                        .ok()
                        .and_then(Result::ok)
                        .flatten(),
                    false => None,
                };
                // A deletion of what never went downstream (a key, or a merged session,
                // created and deleted since the last commit) is not passed on.
                if entry.is_none() && committed.is_none() {
                    continue;
                }
                let (time, value) = match entry.as_ref().and_then(split_timestamped) {
                    Some((time, value)) => (time, Some(value)),
                    None => (self.stream_time(), None),
                };
                let old = committed
                    .filter(|_| node.sends_old_values)
                    .as_ref()
                    .and_then(split_timestamped)
                    .map(|(_, old)| old);
                let window = match windows {
                    None => None,
                    Some(Windows::Session(_)) => keys::parse_session_key(&stored),
                    Some(windows) => keys::parse_window_key(&stored)
                        .map(|(key, start, _)| (key, start, start + windows.size().unwrap_or(0))),
                };
                let key = match (windows, window) {
                    (None, _) => Datum::Raw(stored.clone()),
                    (Some(_), Some((key, start, end))) => {
                        self.windowed_key(node, &slot.key_type, key, start, end)?
                    }
                    (Some(_), None) => continue,
                };
                let update = Update { value, old, time };
                if let Err(failure) = self.forward_update(node, key, update, &[]) {
                    let handler = failure.kind.handler(handling);
                    if handler.handler == Handler::StopOnFail {
                        return Err(failure);
                    }
                    if handler.log {
                        tracing::error!(
                            target: "ksml",
                            "{} error sending a cached update downstream at node {}: {}",
                            failure.kind.title(),
                            failure.node,
                            failure.message
                        );
                    }
                }
            }
        }
        self.release_due()
    }
}

impl<'py> BatchProcessor<'_, 'py> {
    /// Session windows, as Kafka Streams merges them: the key's sessions within `gap` of the
    /// record become one session with it, their aggregates combined (count: summed; reduce:
    /// reduced in order; aggregate: merged with `merger`, then the record aggregated). The
    /// merged sessions are deleted (a tombstone goes downstream for each), and a record whose
    /// merged session ended before stream time minus grace is dropped as late.
    fn aggregate_session(
        &mut self,
        node: &OpNode,
        aggregation: &Aggregation,
        sessions: SessionWindows,
        key: Bytes,
        mut rec: Rec<'py>,
    ) -> Result<(), Failure> {
        let py = self.py;
        let slot = &self.topology.stores[aggregation.store];
        let time = rec.timestamp;
        let lower = keys::session_key(&key, i64::MIN, time.saturating_sub(sessions.gap));
        let upper = keys::session_key(&key, i64::MAX, i64::MAX);
        let found = self.in_store(node, aggregation.store, |s| s.range(&lower, &upper))?;
        let mut merged = Vec::new();
        let (mut start, mut end, mut latest) = (time, time, time);
        for (stored, entry) in found {
            let Some((_, session_start, session_end)) = keys::parse_session_key(&stored) else {
                continue;
            };
            if session_start > time.saturating_add(sessions.gap) {
                continue;
            }
            let Some((entry_time, value)) = split_timestamped(&entry) else {
                continue;
            };
            start = start.min(session_start);
            end = end.max(session_end);
            latest = latest.max(entry_time);
            merged.push((stored, session_start, session_end, value));
        }
        if end < self.stream_time() - sessions.grace {
            self.late_records += 1;
            return Ok(());
        }
        let decode = |value: &Bytes| self.stored_py(node, value, &slot.value_type);
        let encode =
            |obj: Bound<'py, PyAny>, f: FnId| self.to_stored(node, &obj, &slot.value_type, f);
        let value: Option<Bytes> = match &aggregation.kind {
            AggregationKind::Count => {
                let earlier: i64 = merged.iter().filter_map(|(_, _, _, v)| count_of(v)).sum();
                Some(count_entry(earlier + 1))
            }
            AggregationKind::Reduce { reducer } => {
                let earlier = merged.iter().map(|(_, _, _, value)| decode(value));
                match self.reduce_all(node, *reducer, earlier)? {
                    None => rec
                        .value
                        .to_bytes(&node.value_type, &slot.value_type)
                        .map_err(|e| Self::consume_failure(node, e))?,
                    Some(so_far) => {
                        let value = rec
                            .value
                            .as_py(py, &node.value_type)
                            .map_err(|e| Self::consume_failure(node, e))?;
                        let result = self.call(*reducer, &[so_far, value], &node.name)?;
                        encode(result, *reducer)?
                    }
                }
            }
            AggregationKind::Aggregate {
                initializer,
                aggregator,
                merger,
            } => {
                let mut aggregate = self.call(*initializer, &[], &node.name)?;
                let [key, value] = self.key_value(node, &mut rec)?;
                for (_, _, _, earlier) in &merged {
                    let merger = merger.expect("validated: session aggregations have a merger");
                    let args = [key.clone(), aggregate, decode(earlier)?];
                    aggregate = self.call(merger, &args, &node.name)?;
                }
                let result = self.call(*aggregator, &[key, value, aggregate], &node.name)?;
                encode(result, *aggregator)?
            }
            AggregationKind::TableCount
            | AggregationKind::TableReduce { .. }
            | AggregationKind::TableAggregate { .. } => {
                unreachable!("validated: a grouped table is not windowed")
            }
        };
        for (stored, session_start, session_end, _) in merged {
            let window = (session_start, session_end);
            self.put_window(
                node,
                aggregation,
                stored,
                &key,
                window,
                None,
                latest,
                &rec.headers,
            )?;
        }
        let stored = keys::session_key(&key, start, end);
        self.put_window(
            node,
            aggregation,
            stored,
            &key,
            (start, end),
            value,
            latest,
            &rec.headers,
        )
    }

    /// Keeps a window's new aggregate (None deletes the window) and, without caching, passes
    /// it on keyed by the window.
    #[allow(clippy::too_many_arguments)]
    fn put_window(
        &mut self,
        node: &OpNode,
        aggregation: &Aggregation,
        stored: Bytes,
        key: &[u8],
        (start, end): (i64, i64),
        value: Option<Bytes>,
        time: i64,
        headers: &[Header],
    ) -> Result<(), Failure> {
        let slot = &self.topology.stores[aggregation.store];
        let entry = value.as_ref().map(|v| timestamped(time, v));
        self.store_put(node, aggregation.store, stored, entry)?;
        if slot.spec.caching {
            return Ok(());
        }
        let windowed = self.windowed_key(node, &slot.key_type, key, start, end)?;
        let update = Update {
            value,
            old: None,
            time,
        };
        self.forward_update(node, windowed, update, headers)
    }
}

impl<'py> BatchProcessor<'_, 'py> {
    /// Keeps a record as its key's latest value (a null value deletes the key); without
    /// caching the update goes downstream at once.
    pub(super) fn materialize(
        &mut self,
        node: &OpNode,
        store: StoreId,
        rec: Rec<'py>,
    ) -> Result<(), Failure> {
        let slot = &self.topology.stores[store];
        let Some((key, value)) = Self::stored_pair(node, slot, &rec)? else {
            return Ok(());
        };
        let old = match node.sends_old_values && !slot.spec.caching {
            true => self
                .in_store(node, store, |s| s.get(&key))?
                .as_ref()
                .and_then(split_timestamped)
                .map(|(_, old)| old),
            false => None,
        };
        let entry = value.as_ref().map(|v| timestamped(rec.timestamp, v));
        self.store_put(node, store, key.clone(), entry)?;
        if slot.spec.caching {
            return Ok(());
        }
        let update = Update {
            value,
            old,
            time: rec.timestamp,
        };
        self.forward_update(node, Datum::Raw(key), update, &rec.headers)
    }
}

impl<'py> BatchProcessor<'_, 'py> {
    /// Sliding windows, with Kafka Streams' windows: a record at `t` has a window ending at it
    /// (`[t - d, t]`, or `[0, d]` for records earlier than `d`) and one starting just after it
    /// (`[t + 1, t + 1 + d]`) once that holds records. A record changes the windows it falls
    /// in and makes its own; each is worked out again from the key's records in it, oldest
    /// first. Records whose windows have all closed (stream time minus grace) are dropped as
    /// late, and closed windows are not updated.
    fn aggregate_sliding(
        &mut self,
        node: &OpNode,
        aggregation: &Aggregation,
        sliding: SlidingWindows,
        key: Bytes,
        mut rec: Rec<'py>,
    ) -> Result<(), Failure> {
        let records = aggregation
            .records
            .expect("sliding windows keep their records");
        let records_slot = &self.topology.stores[records];
        let (t, d) = (rec.timestamp, sliding.time_difference);
        let close = self.stream_time() - sliding.grace;
        if t.saturating_add(1).saturating_add(d) <= close {
            self.late_records += 1;
            return Ok(());
        }
        let value = rec
            .value
            .to_bytes(&node.value_type, &records_slot.value_type)
            .map_err(|e| Self::consume_failure(node, e))?
            .expect("null values were skipped");
        let seq = self.fresh_sequence(node, records, &key, t)?;
        let stored = keys::window_key(&key, t, seq);
        self.store_put(node, records, stored, Some(timestamped(t, &value)))?;
        // The key's records that can share a window with this one, oldest first.
        let lower = keys::window_lower_bound(&key, t.saturating_sub(d).saturating_sub(1));
        let upper = keys::window_upper_bound(&key, t.saturating_add(d).saturating_add(1));
        let nearby: Vec<(i64, Bytes)> = self
            .in_store(node, records, |s| s.range(&lower, &upper))?
            .iter()
            .filter_map(|(_, entry)| split_timestamped(entry))
            .collect();
        let mut starts = std::collections::BTreeSet::from([t.saturating_sub(d).max(0)]);
        for (time, _) in &nearby {
            if *time > t && *time <= t + d {
                starts.insert((time - d).max(0));
            }
            if *time < t && *time >= t - d - 1 {
                starts.insert(time + 1);
            }
        }
        // The window just after this record holds only later records: made once, by the
        // first record at this time (Kafka Streams does not remake it for another).
        if nearby
            .iter()
            .any(|(time, _)| *time > t && *time <= t + 1 + d)
        {
            let right = keys::window_key(&key, t + 1, 0);
            if self
                .in_store(node, aggregation.store, |s| s.get(&right))?
                .is_none()
            {
                starts.insert(t + 1);
            }
        }
        let key_py = rec
            .key
            .as_py(self.py, &node.key_type)
            .map_err(|e| Self::consume_failure(node, e))?;
        for start in starts {
            let end = start + d;
            if end <= close {
                continue;
            }
            let inside: Vec<&(i64, Bytes)> = nearby
                .iter()
                .filter(|(time, _)| (start..=end).contains(time))
                .collect();
            let Some(latest) = inside.iter().map(|(time, _)| *time).max() else {
                continue;
            };
            let value = self.fold_window(node, aggregation, &key_py, records_slot, &inside)?;
            let stored = keys::window_key(&key, start, 0);
            let window = (start, end);
            self.put_window(
                node,
                aggregation,
                stored,
                &key,
                window,
                value,
                latest,
                &rec.headers,
            )?;
        }
        Ok(())
    }

    /// Values reduced in order with `reducer`; None for none.
    fn reduce_all(
        &self,
        node: &OpNode,
        reducer: FnId,
        values: impl Iterator<Item = Result<Bound<'py, PyAny>, Failure>>,
    ) -> Result<Option<Bound<'py, PyAny>>, Failure> {
        let mut reduced = None;
        for value in values {
            let value = value?;
            reduced = Some(match reduced {
                None => value,
                Some(so_far) => self.call(reducer, &[so_far, value], &node.name)?,
            });
        }
        Ok(reduced)
    }

    /// A window's aggregate of its records (oldest first): counted, reduced, or aggregated
    /// from the initializer.
    fn fold_window(
        &self,
        node: &OpNode,
        aggregation: &Aggregation,
        key: &Bound<'py, PyAny>,
        records_slot: &StoreSlot,
        records: &[&(i64, Bytes)],
    ) -> Result<Option<Bytes>, Failure> {
        let slot = &self.topology.stores[aggregation.store];
        let decode = |bytes: &Bytes| self.stored_py(node, bytes, &records_slot.value_type);
        let encode =
            |obj: Bound<'py, PyAny>, f: FnId| self.to_stored(node, &obj, &slot.value_type, f);
        match &aggregation.kind {
            AggregationKind::Count => Ok(Some(count_entry(records.len() as i64))),
            AggregationKind::Reduce { reducer } => {
                let values = records.iter().map(|(_, value)| decode(value));
                match self.reduce_all(node, *reducer, values)? {
                    Some(reduced) => encode(reduced, *reducer),
                    None => Ok(None),
                }
            }
            AggregationKind::Aggregate {
                initializer,
                aggregator,
                ..
            } => {
                let mut aggregate = self.call(*initializer, &[], &node.name)?;
                for (_, value) in records {
                    let args = [key.clone(), decode(value)?, aggregate];
                    aggregate = self.call(*aggregator, &args, &node.name)?;
                }
                encode(aggregate, *aggregator)
            }
            AggregationKind::TableCount
            | AggregationKind::TableReduce { .. }
            | AggregationKind::TableAggregate { .. } => {
                unreachable!("validated: a grouped table is not windowed")
            }
        }
    }
}
