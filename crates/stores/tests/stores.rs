//! Stores against both backends: buffered writes, savepoints, changelog records, commits with
//! checkpoints that survive a reopen, and restores.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use millrace_stores::{
    Backend, ChangelogRecord, MemoryBackend, StateDir, Store, StoreKind, StoreSpec, keys,
};

fn b(text: &str) -> Bytes {
    Bytes::from(text.to_string())
}

fn spec(caching: bool, logging: bool) -> Arc<StoreSpec> {
    Arc::new(StoreSpec {
        caching,
        logging,
        ..StoreSpec::key_value("counts")
    })
}

/// Runs a check against a store on each backend.
fn on_both_backends(spec: Arc<StoreSpec>, check: impl Fn(&mut dyn FnMut() -> Store)) {
    let mut in_memory = || Store::new(spec.clone(), Box::new(MemoryBackend::default()));
    check(&mut in_memory);
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let mut on_disk = || {
        let backend: Box<dyn Backend> = Box::new(state.backend("0_0", &spec.name).unwrap());
        Store::new(spec.clone(), backend)
    };
    check(&mut on_disk);
}

#[test]
fn reads_see_buffered_writes_and_a_rollback_undoes_one_record() {
    on_both_backends(spec(true, true), |new_store| {
        let mut store = new_store();
        store.put(b("a"), Some(b("1")));
        store.put(b("b"), Some(b("2")));
        store.commit(Some(2)).unwrap();
        store.savepoint();
        store.put(b("a"), Some(b("10")));
        store.put(b("c"), Some(b("3")));
        store.put(b("b"), None);
        assert_eq!(store.get(b"a").unwrap(), Some(b("10")));
        assert_eq!(store.get(b"b").unwrap(), None);
        let all = store.all().unwrap();
        assert_eq!(all, vec![(b("a"), b("10")), (b("c"), b("3"))]);
        store.rollback();
        assert_eq!(store.get(b"a").unwrap(), Some(b("1")));
        assert_eq!(store.get(b"b").unwrap(), Some(b("2")));
        assert_eq!(store.get(b"c").unwrap(), None);
        assert!(!store.has_writes());
        assert_eq!(store.buffered_bytes(), 0);
    });
}

#[test]
fn caching_collapses_the_changelog_to_the_latest_write_per_key() {
    let writes = [
        ("a", Some("1")),
        ("a", Some("2")),
        ("b", Some("1")),
        ("a", None),
    ];
    let changelog = |caching: bool| {
        let mut store = Store::new(spec(caching, true), Box::new(MemoryBackend::default()));
        for (k, v) in writes {
            store.put(b(k), v.map(b));
        }
        store.changelog()
    };
    let record = |k: &str, v: Option<&str>| ChangelogRecord {
        key: b(k),
        value: v.map(b),
    };
    assert_eq!(
        changelog(true),
        vec![record("a", None), record("b", Some("1"))]
    );
    assert_eq!(changelog(false), writes.map(|(k, v)| record(k, v)).to_vec());
    let unlogged = Store::new(spec(false, false), Box::new(MemoryBackend::default()));
    assert!(unlogged.changelog().is_empty());
}

#[test]
fn persistent_entries_and_checkpoints_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let state = StateDir::open(dir.path()).unwrap();
        let mut store = Store::new(
            spec(true, true),
            Box::new(state.backend("1_0", "counts").unwrap()),
        );
        store.put(b("k"), Some(b("v")));
        store.commit(Some(41)).unwrap();
        let mut other = Store::new(
            spec(true, true),
            Box::new(state.backend("1_1", "counts").unwrap()),
        );
        other.put(b("k"), Some(b("other task")));
        other.commit(Some(7)).unwrap();
    }
    let state = StateDir::open(dir.path()).unwrap();
    let mut store = Store::new(
        spec(true, true),
        Box::new(state.backend("1_0", "counts").unwrap()),
    );
    assert_eq!(store.get(b"k").unwrap(), Some(b("v")));
    assert_eq!(store.checkpoint().unwrap(), Some(41));
    store.clear().unwrap();
    assert_eq!(store.get(b"k").unwrap(), None);
    assert_eq!(store.checkpoint().unwrap(), None);
    let other = Store::new(
        spec(true, true),
        Box::new(state.backend("1_1", "counts").unwrap()),
    );
    assert_eq!(other.get(b"k").unwrap(), Some(b("other task")));
}

#[test]
fn window_stores_restore_from_kafka_streams_changelog_keys() {
    let window = Arc::new(StoreSpec {
        kind: StoreKind::Window,
        logging: true,
        caching: true,
        ..StoreSpec::key_value("windows")
    });
    let mut source = Store::new(window.clone(), Box::new(MemoryBackend::default()));
    for (start, value) in [(0, "x"), (60_000, "y"), (120_000, "z")] {
        source.put(keys::window_key(b"user", start, 0), Some(b(value)));
    }
    source.put(keys::window_key(b"other", 60_000, 0), Some(b("o")));
    let changelog = source.changelog();
    assert!(
        changelog
            .iter()
            .all(|r| r.key.len() == r.key.len() && !r.key.starts_with(&[0, 0]))
    );
    let mut restored = Store::new(window, Box::new(MemoryBackend::default()));
    let skipped = restored.restore(changelog, 4).unwrap();
    assert_eq!(skipped, 0);
    assert_eq!(restored.checkpoint().unwrap(), Some(4));
    let lower = keys::window_lower_bound(b"user", 30_000);
    let upper = keys::window_upper_bound(b"user", 120_000);
    let fetched: Vec<(i64, Bytes)> = restored
        .scan(Bound::Included(&lower), Bound::Included(&upper))
        .unwrap()
        .into_iter()
        .map(|(k, v)| (keys::parse_window_key(&k).unwrap().1, v))
        .collect();
    assert_eq!(fetched, vec![(60_000, b("y")), (120_000, b("z"))]);
}
