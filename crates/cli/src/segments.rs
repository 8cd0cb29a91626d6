//! `millrace segments`: a datasource's published segments as a table (interval, version,
//! shard spec with its range, rows, size), read from the server's `sys.segments`.

use serde_json::{Value, json};

use crate::http::Client;
use crate::sql::table;

const QUERY: &str = "SELECT \"start\", \"end\", version, partition_num, shard_spec, num_rows, \"size\", \
     is_overshadowed FROM sys.segments WHERE datasource = ? AND is_published = 1 \
     ORDER BY \"start\", version, partition_num";

/// A range bound as text: the value, or the tuple of values (null: unbounded, or a null value
/// inside a tuple).
fn bound(value: &Value, unbounded: &str) -> String {
    match value {
        Value::Null => unbounded.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(values) => {
            let parts: Vec<String> = values
                .iter()
                .map(|v| v.as_str().map_or("null".to_string(), str::to_string))
                .collect();
            format!("({})", parts.join(", "))
        }
        other => other.to_string(),
    }
}

/// The shard spec's type and what its segment holds, as the console shows them.
pub fn describe_shard(spec: &Value) -> (String, String) {
    let kind = spec["type"].as_str().unwrap_or("?").to_string();
    let holds = match kind.as_str() {
        "single" => format!(
            "{} in [{}, {})",
            spec["dimension"].as_str().unwrap_or("?"),
            bound(&spec["start"], "-inf"),
            bound(&spec["end"], "+inf")
        ),
        "range" => format!(
            "({}) in [{}, {})",
            spec["dimensions"]
                .as_array()
                .map(|d| d
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
            bound(&spec["start"], "-inf"),
            bound(&spec["end"], "+inf")
        ),
        "hashed" => format!(
            "bucket {} of {} by {}",
            spec["bucketId"],
            spec["numBuckets"],
            spec["partitionDimensions"]
                .as_array()
                .filter(|d| !d.is_empty())
                .map_or("all dimensions".into(), |d| {
                    d.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
        ),
        _ => match spec["partitions"].as_u64() {
            Some(n) if n > 0 => format!("{} of {n}", spec["partitionNum"]),
            _ => "appended".into(),
        },
    };
    (kind, holds)
}

/// Prints a datasource's segments.
pub fn run(url: &str, datasource: &str) -> Result<(), String> {
    let client = Client::new(url)?;
    let request = json!({"query": QUERY, "resultFormat": "array",
                         "parameters": [{"type": "VARCHAR", "value": datasource}]});
    let body = client.post(
        "/druid/v2/sql",
        "application/json",
        request.to_string().as_bytes(),
    )?;
    let rows: Vec<Vec<Value>> = serde_json::from_str(&body)
        .map_err(|e| format!("the answer is not a JSON array of rows: {e}"))?;
    if rows.is_empty() {
        return Err(format!(
            "datasource '{datasource}' has no published segments"
        ));
    }
    let mut lines = vec![
        [
            "start",
            "end",
            "version",
            "partition",
            "shard",
            "holds",
            "rows",
            "size",
            "overshadowed",
        ]
        .map(Value::from)
        .to_vec(),
    ];
    for row in rows {
        let spec: Value = row[4]
            .as_str()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or(Value::Null);
        let (kind, holds) = describe_shard(&spec);
        lines.push(vec![
            row[0].clone(),
            row[1].clone(),
            row[2].clone(),
            row[3].clone(),
            kind.into(),
            holds.into(),
            row[5].clone(),
            row[6].clone(),
            Value::from(if row[7] == json!(1) { "yes" } else { "no" }),
        ]);
    }
    print!("{}", table(&lines));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_specs_read_as_the_console_shows_them() {
        let single = json!({"type": "single", "dimension": "username", "start": null,
                            "end": "leon", "partitionNum": 0, "numCorePartitions": 4});
        assert_eq!(
            describe_shard(&single),
            ("single".into(), "username in [-inf, leon)".into())
        );
        let range = json!({"type": "range", "dimensions": ["a", "b"], "start": ["x", null],
                           "end": null, "partitionNum": 1, "numCorePartitions": 2});
        assert_eq!(describe_shard(&range).1, "(a, b) in [(x, null), +inf)");
        let hashed = json!({"type": "hashed", "bucketId": 1, "numBuckets": 3,
                            "partitionDimensions": ["username"]});
        assert_eq!(describe_shard(&hashed).1, "bucket 1 of 3 by username");
        let numbered = json!({"type": "numbered", "partitionNum": 2, "partitions": 0});
        assert_eq!(
            describe_shard(&numbered),
            ("numbered".into(), "appended".into())
        );
        let compacted = json!({"type": "numbered", "partitionNum": 0, "partitions": 1});
        assert_eq!(describe_shard(&compacted).1, "0 of 1");
    }
}
