//! Property tests on stable: the fuzz targets' entry points (see `fuzz/`) fed with their seed
//! inputs (`fuzz/seeds/<target>/`) mutated at random, and with arbitrary bytes, for a bounded
//! number of cases each. A failure prints the input that caused it.

use proptest::prelude::*;

use super::Path;

/// The seed inputs of a fuzz target.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "{} holds seeds", dir.display());
    seeds
}

/// One edit of an input: overwrite, insert or remove a byte, or cut the input short.
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn apply(mut input: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let at = |i: usize| i % (input.len() + 1);
        match *edit {
            Edit::Set(i, b) if !input.is_empty() => {
                let i = i % input.len();
                input[i] = b;
            }
            Edit::Insert(i, b) => {
                let i = at(i);
                input.insert(i, b);
            }
            Edit::Remove(i) if !input.is_empty() => {
                let i = i % input.len();
                input.remove(i);
            }
            Edit::Truncate(i) => {
                let i = at(i);
                input.truncate(i);
            }
            _ => {}
        }
    }
    input
}

/// Seeds of `target` with up to eight random edits, or plain random bytes.
fn inputs(target: &str) -> impl Strategy<Value = Vec<u8>> {
    let edit = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Remove),
        any::<usize>().prop_map(Edit::Truncate),
    ];
    let mutated = (
        proptest::sample::select(seeds(target)),
        proptest::collection::vec(edit, 0..8),
    )
        .prop_map(|(seed, edits)| apply(seed, &edits));
    prop_oneof![
        4 => mutated,
        1 => proptest::collection::vec(any::<u8>(), 0..256),
    ]
}

/// A fuzz target's entry point: arbitrary bytes in, a panic on a finding.
type EntryPoint = fn(&[u8]);

/// The fuzz targets' entry points by target name.
const TARGETS: [(&str, EntryPoint); 6] = [
    ("journal", millrace_log::fuzz::open_damaged_journal),
    ("json_to_python", millrace_python::fuzz::json_to_python),
    ("druid_record", millrace_segments::fuzz::druid_record),
    ("supervisor_spec", millrace_segments::fuzz::supervisor_spec),
    ("ksml_definition", millrace_ksml::fuzz::ksml_definition),
    ("sql_query", millrace_query::fuzz::sql_query),
];

/// Every seed as it is, among them the inputs fuzzing found (`found-*`): regression tests.
#[test]
fn every_seed_passes_its_target() {
    for (target, entry_point) in TARGETS {
        for seed in seeds(target) {
            entry_point(&seed);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn damaged_journals_never_panic(data in inputs("journal")) {
        millrace_log::fuzz::open_damaged_journal(&data);
    }

    #[test]
    fn json_decodes_to_python_as_serde_json_reads_it(data in inputs("json_to_python")) {
        millrace_python::fuzz::json_to_python(&data);
    }

    #[test]
    fn druid_records_never_panic(data in inputs("druid_record")) {
        millrace_segments::fuzz::druid_record(&data);
    }

    #[test]
    fn supervisor_specs_never_panic(data in inputs("supervisor_spec")) {
        millrace_segments::fuzz::supervisor_spec(&data);
    }

    #[test]
    fn ksml_definitions_load_with_problems_inside_the_text(data in inputs("ksml_definition")) {
        millrace_ksml::fuzz::ksml_definition(&data);
    }

    #[test]
    fn sql_queries_never_panic(data in inputs("sql_query")) {
        millrace_query::fuzz::sql_query(&data);
    }
}
