//! Tables: filter and mapValues of table updates, groupBy of a table with adder and
//! subtractor, and table-table joins.

use super::*;

/// `users` and `accounts` tables keyed by user, kept in stores without caching so every
/// update goes downstream at once.
const TABLES: &str = "
stores:
  users_store:
    type: keyValue
    keyType: string
    valueType: json
    caching: false
  accounts_store:
    type: keyValue
    keyType: string
    valueType: json
    caching: false
tables:
  users:
    topic: users
    keyType: string
    valueType: json
    store: users_store
  accounts:
    topic: accounts
    keyType: string
    valueType: json
    store: accounts_store
";

/// A pipeline from the users table through `via` to `output` with `value_type` values.
fn from_users(via: &str, value_type: &str) -> String {
    format!(
        "{TABLES}
pipelines:
  p:
    from: users
    via:
{via}
      - type: toStream
    to:
      topic: output
      keyType: string
      valueType: {value_type}
"
    )
}

/// (key, long value or None) pairs of `output`.
fn counts(env: &Env) -> Vec<(String, Option<i64>)> {
    env.records("output")
        .into_iter()
        .map(|(_, r)| {
            let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
            let value = r
                .value
                .map(|v| i64::from_be_bytes(v.as_ref().try_into().unwrap()));
            (key, value)
        })
        .collect()
}

#[test]
fn filter_and_map_values_of_a_table_delete_keys_whose_value_fails() {
    let env = Env::new();
    append_json(
        &env,
        "users",
        &[
            ("u1", json!({"name": "Ann", "age": 30}), 1),
            ("u2", json!({"name": "Bob", "age": 15}), 2),
            ("u1", json!({"name": "Ann", "age": 12}), 3),
            ("u2", Json::Null, 4),
        ],
    );
    env.run(&from_users(
        "      - type: filter
        if:
          expression: value['age'] >= 18
      - type: mapValues
        mapper:
          expression: \"{'name': value['name']}\"
          resultType: json",
        "json",
    ));
    // As Kafka Streams' KTable filter: a value failing the predicate, and a deletion, go on
    // as a deletion (the predicate and mapper never see a null).
    assert_eq!(
        env.pairs("output"),
        [
            (Some("u1".into()), json!({"name": "Ann"})),
            (Some("u2".into()), Json::Null),
            (Some("u1".into()), Json::Null),
            (Some("u2".into()), Json::Null),
        ]
    );
}

/// Users moving between cities: u1 joins A, u2 joins A, u1's age changes within A, u1 moves
/// to B, u2 leaves.
fn append_moves(env: &Env) {
    append_json(
        env,
        "users",
        &[
            ("u1", json!({"city": "A", "age": 10}), 1),
            ("u2", json!({"city": "A", "age": 5}), 2),
            ("u1", json!({"city": "A", "age": 20}), 3),
            ("u1", json!({"city": "B", "age": 20}), 4),
            ("u2", Json::Null, 5),
        ],
    );
}

#[test]
fn grouped_tables_take_old_values_out_and_add_new_ones() {
    let group_by_city = "      - type: groupBy
        name: by_city
        mapper:
          expression: (value['city'], value['age'])
          resultType: (string, long)";
    let env = Env::new();
    append_moves(&env);
    env.run(&from_users(
        &format!(
            "{group_by_city}
      - type: count
        store:
          type: keyValue
          caching: false"
        ),
        "long",
    ));
    // An update within one city is one record (taken out and added at once); a move is
    // taken out of the old city, then added to the new one.
    let expected = |values: [i64; 6]| {
        ["A", "A", "A", "A", "B", "A"]
            .into_iter()
            .zip(values)
            .map(|(k, v)| (k.to_string(), Some(v)))
            .collect::<Vec<_>>()
    };
    assert_eq!(counts(&env), expected([1, 2, 2, 1, 1, 0]));
    assert_eq!(
        env.log
            .partition_count("millrace-by_city-repartition")
            .unwrap(),
        Some(1)
    );

    for (operation, functions) in [
        (
            "aggregate",
            "initializer:
          expression: 0
          resultType: long
        adder:
          expression: aggregatedValue + value
          resultType: long
        subtractor:
          expression: aggregatedValue - value
          resultType: long",
        ),
        (
            "reduce",
            "adder:
          expression: value1 + value2
        subtractor:
          expression: value1 - value2",
        ),
    ] {
        let env = Env::new();
        append_moves(&env);
        env.run(&from_users(
            &format!(
                "{group_by_city}
      - type: {operation}
        {functions}
        store:
          type: keyValue
          caching: false"
            ),
            "long",
        ));
        assert_eq!(
            counts(&env),
            expected([10, 15, 25, 5, 20, 0]),
            "{operation}"
        );
    }
}

#[test]
fn a_filtered_table_sends_old_values_to_a_grouped_table() {
    let env = Env::new();
    append_json(
        &env,
        "users",
        &[
            ("u1", json!({"city": "A", "age": 30}), 1),
            ("u2", json!({"city": "A", "age": 40}), 2),
            ("u1", json!({"city": "A", "age": 12}), 3),
        ],
    );
    env.run(&from_users(
        "      - type: filter
        if:
          expression: value['age'] >= 18
      - type: groupBy
        mapper:
          expression: (value['city'], key)
          resultType: (string, string)
      - type: count
        store:
          type: keyValue
          caching: false",
        "long",
    ));
    // u1 no longer passing the filter is taken out of A's count.
    assert_eq!(
        counts(&env),
        [
            ("A".into(), Some(1)),
            ("A".into(), Some(2)),
            ("A".into(), Some(1))
        ]
    );
}

#[test]
fn table_table_joins_join_updates_from_both_sides() {
    let joined = |kind: &str| {
        let env = Env::new();
        append_json(&env, "users", &[("u1", json!({"name": "Ann"}), 1)]);
        append_json(&env, "accounts", &[("u1", json!({"balance": 5}), 2)]);
        append_json(&env, "users", &[("u2", json!({"name": "Bob"}), 3)]);
        append_json(&env, "accounts", &[("u3", json!({"balance": 7}), 4)]);
        append_json(&env, "users", &[("u1", Json::Null, 5)]);
        env.run(&from_users(
            &format!(
                "      - type: {kind}
        table: accounts
        valueJoiner:
          expression: \"{{'key': key, 'name': value1['name'] if value1 else None, 'balance': value2['balance'] if value2 else None}}\"
          resultType: json"
            ),
            "json",
        ));
        env.pairs("output")
    };
    let row = |key: &str, name: Option<&str>, balance: Option<i64>| {
        (
            Some(key.to_string()),
            json!({"key": null, "name": name, "balance": balance}),
        )
    };
    let deleted = |key: &str| (Some(key.to_string()), Json::Null);
    assert_eq!(
        joined("join"),
        [row("u1", Some("Ann"), Some(5)), deleted("u1")]
    );
    assert_eq!(
        joined("leftJoin"),
        [
            row("u1", Some("Ann"), None),
            row("u1", Some("Ann"), Some(5)),
            row("u2", Some("Bob"), None),
            deleted("u1"),
        ]
    );
    assert_eq!(
        joined("outerJoin"),
        [
            row("u1", Some("Ann"), None),
            row("u1", Some("Ann"), Some(5)),
            row("u2", Some("Bob"), None),
            row("u3", None, Some(7)),
            row("u1", None, Some(5)),
        ]
    );
}

#[test]
fn a_joined_table_sends_old_values_to_a_grouped_table() {
    let env = Env::new();
    append_json(&env, "users", &[("u1", json!({"city": "A"}), 1)]);
    append_json(&env, "accounts", &[("u1", json!({"balance": 5}), 2)]);
    append_json(&env, "accounts", &[("u1", json!({"balance": 8}), 3)]);
    env.run(&from_users(
        "      - type: join
        table: accounts
        valueJoiner:
          expression: \"{'city': value1['city'], 'balance': value2['balance']}\"
          resultType: json
      - type: groupBy
        mapper:
          expression: (value['city'], value['balance'])
          resultType: (string, long)
      - type: reduce
        adder:
          expression: value1 + value2
        subtractor:
          expression: value1 - value2
        store:
          type: keyValue
          caching: false",
        "long",
    ));
    // The balance changing from 5 to 8 replaces it in A's total.
    assert_eq!(counts(&env), [("A".into(), Some(5)), ("A".into(), Some(8))]);
}

#[test]
fn cogroup_aggregates_with_its_aggregator_plain_and_windowed() {
    let cogrouped = |windowing: &str| {
        let env = Env::new();
        append_json(
            &env,
            "orders",
            &[
                ("c1", json!({"amount": 5}), 1_000),
                ("c2", json!({"amount": 1}), 2_000),
                ("c1", json!({"amount": 7}), 61_000),
            ],
        );
        env.run(&format!(
            "
streams:
  orders:
    topic: orders
    keyType: string
    valueType: json
pipelines:
  totals:
    from: orders
    via:
      - type: groupByKey
      - type: cogroup
        aggregator:
          expression: aggregatedValue + value['amount']
          resultType: long
{windowing}
      - type: aggregate
        initializer:
          expression: 0
          resultType: long
        store:
          type: {store}
          caching: false
      - type: toStream
        mapper:
          expression: str(key) if isinstance(key, str) else key['key'] + '@' + str(key['start'])
          resultType: string
    to:
      topic: output
      keyType: string
      valueType: long
",
            store = if windowing.is_empty() {
                "keyValue"
            } else {
                "window"
            },
        ));
        counts(&env)
    };
    assert_eq!(
        cogrouped(""),
        [
            ("c1".into(), Some(5)),
            ("c2".into(), Some(1)),
            ("c1".into(), Some(12))
        ]
    );
    assert_eq!(
        cogrouped("      - type: windowByTime\n        windowType: tumbling\n        duration: 1m"),
        [
            ("c1@0".into(), Some(5)),
            ("c2@0".into(), Some(1)),
            ("c1@60000".into(), Some(7))
        ]
    );
}

/// Appends JSON values with timestamps to a topic of `partitions` partitions, each to the
/// partition its key hashes to (as a producer would).
fn append_keyed(env: &Env, topic: &str, partitions: u32, records: &[(&str, Json, i64)]) {
    if env.log.partition_count(topic).unwrap().is_none() {
        env.log.create_topic(topic, partitions).unwrap();
    }
    for (key, value, time) in records {
        let record = Record {
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: (!value.is_null()).then(|| Bytes::from(value.to_string())),
            timestamp: *time,
            headers: vec![],
        };
        let partition = millrace_log::murmur2_partition(key.as_bytes(), partitions);
        env.log.append(topic, partition, vec![record]).unwrap();
    }
}

#[test]
fn foreign_key_joins_follow_both_tables_without_copartitioning() {
    let joined = |kind: &str| {
        let env = Env::new();
        let yaml = format!(
            "
tables:
  orders:
    topic: orders
    keyType: string
    valueType: json
  products:
    topic: products
    keyType: string
    valueType: json
pipelines:
  p:
    from: orders
    via:
      - type: {kind}
        name: with_product
        table: products
        foreignKeyExtractor:
          expression: value['product']
          resultType: string
        valueJoiner:
          expression: \"{{'order': value1['id'], 'product': value2['name'] if value2 else None}}\"
          resultType: json
      - type: toStream
    to:
      topic: output
      keyType: string
      valueType: json
"
        );
        // Products in three partitions, orders in one: no co-partitioning needed.
        append_keyed(
            &env,
            "products",
            3,
            &[
                ("p1", json!({"name": "Pen"}), 1),
                ("p2", json!({"name": "Ink"}), 2),
            ],
        );
        append_keyed(
            &env,
            "orders",
            1,
            &[
                ("o1", json!({"id": "o1", "product": "p1"}), 3),
                ("o2", json!({"id": "o2", "product": "p3"}), 4),
                ("o3", json!({"id": "o3", "product": "p2"}), 5),
            ],
        );
        env.run(&yaml);
        let first = latest(&env);
        // o1 moves to p2, o3 goes, then p2 is renamed.
        append_keyed(
            &env,
            "orders",
            1,
            &[
                ("o1", json!({"id": "o1", "product": "p2"}), 6),
                ("o3", Json::Null, 7),
            ],
        );
        append_keyed(
            &env,
            "products",
            3,
            &[("p2", json!({"name": "Blue ink"}), 8)],
        );
        env.run(&yaml);
        assert_eq!(
            env.log
                .partition_count("millrace-with_product-subscription-registration-topic")
                .unwrap(),
            Some(3)
        );
        (first, latest(&env))
    };
    let row = |order: &str, product: Option<&str>| json!({"order": order, "product": product});
    // An inner join's new key whose foreign key the other table lacks gives nothing, as in
    // Kafka Streams (there is no result to retract).
    let (first, then) = joined("join");
    assert_eq!(
        first,
        [
            ("o1".to_string(), row("o1", Some("Pen"))),
            ("o3".to_string(), row("o3", Some("Ink"))),
        ]
        .into()
    );
    assert_eq!(
        then,
        [
            ("o1".to_string(), row("o1", Some("Blue ink"))),
            ("o3".to_string(), Json::Null),
        ]
        .into()
    );
    let (first, then) = joined("leftJoin");
    assert_eq!(first["o2"], row("o2", None));
    assert_eq!(then["o1"], row("o1", Some("Blue ink")));
    assert_eq!(then["o3"], Json::Null);
}

/// The latest value of each key of `output`.
fn latest(env: &Env) -> std::collections::BTreeMap<String, Json> {
    env.pairs("output")
        .into_iter()
        .map(|(k, v)| (k.unwrap(), v))
        .collect()
}

#[test]
fn foreign_key_joins_reach_keys_of_any_bytes() {
    let env = Env::new();
    // Account -1 (a long: eight 0xff bytes) refers to currency c1, which changes afterwards.
    let account = |id: i64, value: Json, time| Record {
        key: Some(Bytes::copy_from_slice(&id.to_be_bytes())),
        value: Some(Bytes::from(value.to_string())),
        timestamp: time,
        headers: vec![],
    };
    env.log.create_topic("accounts", 1).unwrap();
    env.log
        .append(
            "accounts",
            0,
            vec![account(-1, json!({"currency": "c1"}), 2)],
        )
        .unwrap();
    append_json(&env, "currencies", &[("c1", json!({"code": "EUR"}), 1)]);
    let yaml = "
tables:
  accounts:
    topic: accounts
    keyType: long
    valueType: json
  currencies:
    topic: currencies
    keyType: string
    valueType: json
pipelines:
  p:
    from: accounts
    via:
      - type: join
        table: currencies
        foreignKeyExtractor:
          expression: value['currency']
          resultType: string
        valueJoiner:
          expression: value2['code']
          resultType: string
      - type: toStream
    to:
      topic: output
      keyType: long
      valueType: string
";
    env.run(yaml);
    // The currency's update reaches the account through its subscription.
    append_json(&env, "currencies", &[("c1", json!({"code": "USD"}), 3)]);
    env.run(yaml);
    let values: Vec<String> = env
        .records("output")
        .into_iter()
        .map(|(_, r)| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(values, ["EUR", "USD"]);
}
