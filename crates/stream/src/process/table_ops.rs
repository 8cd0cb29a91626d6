//! Operations on a table's updates: filter, mapValues and groupBy, each applied to the new
//! value and, where a node downstream reads it, to the old value too (as Kafka Streams does
//! with `sendOldValues`).

use super::*;

impl<'py> BatchProcessor<'_, 'py> {
    /// filter / filterNot of a table: a new value that fails the predicate deletes the key
    /// (a tombstone goes on), as Kafka Streams' KTable filter. Where old values are sent, an
    /// update whose old and new values both fail is not passed on.
    pub(super) fn table_filter(
        &mut self,
        node: &OpNode,
        predicate: FnId,
        keep_when: bool,
        mut rec: Rec<'py>,
    ) -> Result<(), Failure> {
        let kept = |rec: &mut Rec<'py>, old: bool| -> Result<bool, Failure> {
            let answer = self.call_on(node, rec, predicate, old)?;
            Ok(self.truthy(node, predicate, &answer)? == keep_when)
        };
        if !rec.value.is_null() && !kept(&mut rec, false)? {
            rec.value = Datum::Null;
        }
        if !node.sends_old_values {
            rec.old = Datum::Null;
            return self.forward(node, rec);
        }
        if !rec.old.is_null() && !kept(&mut rec, true)? {
            rec.old = Datum::Null;
        }
        if rec.value.is_null() && rec.old.is_null() {
            return Ok(());
        }
        self.forward(node, rec)
    }

    /// mapValues of a table: the mapper gives the new value (a null stays null), and the old
    /// value where a node downstream reads it.
    pub(super) fn table_map_values(
        &mut self,
        node: &OpNode,
        mapper: FnId,
        mut rec: Rec<'py>,
    ) -> Result<(), Failure> {
        let mapped = |rec: &mut Rec<'py>, old: bool| -> Result<Datum<'py>, Failure> {
            let result = self.call_on(node, rec, mapper, old)?;
            self.conformed(node, mapper, result, &node.out_value_type)
                .map(Datum::Py)
        };
        if !rec.value.is_null() {
            rec.value = mapped(&mut rec, false)?;
        }
        rec.old = match node.sends_old_values && !rec.old.is_null() {
            true => mapped(&mut rec, true)?,
            false => Datum::Null,
        };
        self.forward(node, rec)
    }

    /// groupBy of a table: the mapper picks a (key, value) for the update's new value and for
    /// its old value. The old pair goes on first, to be taken out of its key's aggregate,
    /// then the new pair, to be added (one record when both have the same key). Pairs with a
    /// null key or value are dropped, as in Kafka Streams.
    pub(super) fn table_group_by(
        &mut self,
        node: &OpNode,
        mapper: FnId,
        mut rec: Rec<'py>,
    ) -> Result<(), Failure> {
        let name = &self.topology.functions[mapper].name;
        let usable = |(key, value): (Bound<'py, PyAny>, Bound<'py, PyAny>)| {
            (!key.is_none() && !value.is_none()).then_some((key, value))
        };
        let new = match rec.value.is_null() {
            true => None,
            false => {
                let result = self.call_on(node, &mut rec, mapper, false)?;
                usable(self.pair(node, name, &result)?)
            }
        };
        let old = match rec.old.is_null() {
            true => None,
            false => {
                let result = self.call_on(node, &mut rec, mapper, true)?;
                usable(self.pair(node, name, &result)?)
            }
        };
        let update = |key, value, old| Rec {
            key: Datum::Py(key),
            value,
            old,
            timestamp: rec.timestamp,
            headers: rec.headers.clone(),
        };
        match (old, new) {
            (Some((old_key, old_value)), Some((new_key, new_value)))
                if old_key.eq(&new_key).unwrap_or(false) =>
            {
                let both = update(new_key, Datum::Py(new_value), Datum::Py(old_value));
                self.forward(node, both)
            }
            (old, new) => {
                if let Some((key, value)) = old {
                    self.forward(node, update(key, Datum::Null, Datum::Py(value)))?;
                }
                if let Some((key, value)) = new {
                    self.forward(node, update(key, Datum::Py(value), Datum::Null))?;
                }
                Ok(())
            }
        }
    }
}
