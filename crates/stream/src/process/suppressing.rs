//! suppress: table updates held back until their window closes or a time limit passes.

use super::*;

impl<'py> BatchProcessor<'_, 'py> {
    /// Holds a table update back: the latest per key replaces the one held, and keeps the due
    /// time of the first (time limit) or its window's close. Then lets go what is due.
    pub(super) fn suppress(
        &mut self,
        id: NodeId,
        node: &OpNode,
        suppression: &Suppression,
        mut rec: Rec<'py>,
    ) -> Result<(), Failure> {
        let consume = |e| Self::consume_failure(node, e);
        let slot = &self.topology.stores[suppression.store];
        let Some((key, value)) = Self::stored_pair(node, slot, &rec)? else {
            return Ok(());
        };
        self.load_held(id, node, suppression)?;
        let held_due = self.task.state.held.get(&id).and_then(|h| h.due_of(&key));
        let due = match suppression.until {
            SuppressUntil::TimeLimit { limit } => {
                held_due.unwrap_or(rec.timestamp.saturating_add(limit))
            }
            SuppressUntil::WindowCloses { grace } => {
                let window = rec.key.as_py(self.py, &node.key_type).map_err(consume)?;
                let end: i64 = window
                    .get_item("end")
                    .and_then(|end| end.extract())
                    .map_err(|_| {
                        Self::process_failure(node, "suppress", "the key is not a window")
                    })?;
                end.saturating_add(grace)
            }
        };
        // The value before the first held update stays the old value of what goes on.
        let prior = match node.sends_old_values {
            false => None,
            true if held_due.is_some() => self
                .in_store(node, suppression.store, |s| s.get(&key))?
                .as_ref()
                .and_then(Held::decode)
                .and_then(|held| held.prior),
            true => rec
                .old
                .to_bytes(&node.value_type, &node.value_type)
                .map_err(consume)?,
        };
        let entry = Held {
            due,
            time: rec.timestamp,
            value,
            prior,
        }
        .encode();
        let size = entry.len();
        self.store_put(node, suppression.store, key.clone(), Some(entry))?;
        let held = self.task.state.held.entry(id).or_default();
        held.insert(key, due, size);
        let over = |held: &HeldKeys| {
            suppression.max_records.is_some_and(|n| held.len() > n)
                || suppression.max_bytes.is_some_and(|n| held.bytes() > n)
        };
        if over(held) && !suppression.emit_early_when_full {
            return Err(Self::process_failure(
                node,
                "suppress",
                "the buffer is full (maxRecords / maxBytes) and its bufferFullStrategy is \
                 shutdownWhenFull",
            ));
        }
        // emitEarlyWhenFull: the first due go now, whatever the time.
        while over(self.task.state.held.entry(id).or_default()) {
            self.release(id, node, suppression, i64::MAX, 1)?;
        }
        self.release(id, node, suppression, self.stream_time(), usize::MAX)
    }

    /// Builds a suppress node's index from its buffer store, once per run.
    fn load_held(&mut self, id: NodeId, node: &OpNode, s: &Suppression) -> Result<(), Failure> {
        let held = self.task.state.held.entry(id).or_default();
        let store = s.store;
        let mut held = std::mem::take(held);
        let loaded = self.in_store(node, store, |store| held.load(store));
        self.task.state.held.insert(id, held);
        loaded
    }

    /// Lets go up to `most` held updates due at or before `now`, first due first.
    fn release(
        &mut self,
        id: NodeId,
        node: &OpNode,
        suppression: &Suppression,
        now: i64,
        most: usize,
    ) -> Result<(), Failure> {
        let mut released = 0;
        while released < most {
            let held = self.task.state.held.entry(id).or_default();
            let Some((due, key)) = held.first().cloned() else {
                break;
            };
            if due > now {
                break;
            }
            held.remove(&key);
            let entry = self.in_store(node, suppression.store, |s| {
                let entry = s.get(&key);
                s.put(key.clone(), None);
                entry
            })?;
            released += 1;
            let Some(held) = entry.as_ref().and_then(Held::decode) else {
                continue;
            };
            let rec = Rec {
                key: Datum::Raw(key),
                value: Datum::from_bytes(held.value),
                old: Datum::from_bytes(held.prior),
                timestamp: held.time,
                headers: Vec::new(),
            };
            self.forward(node, rec)?;
        }
        Ok(())
    }

    /// Lets go what every suppress node of this task has due at the current stream time.
    pub(super) fn release_due(&mut self) -> Result<(), Failure> {
        let topology = self.topology;
        let now = self.stream_time();
        for (id, suppression) in topology.suppressions() {
            if task_stores::with_store(suppression.store, |_| ()).is_err() {
                continue;
            }
            let node = &topology.nodes[id];
            self.load_held(id, node, suppression)?;
            self.release(id, node, suppression, now, usize::MAX)?;
        }
        Ok(())
    }
}
