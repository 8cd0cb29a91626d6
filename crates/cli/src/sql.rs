//! `millrace sql`: runs Druid SQL on a server and prints the answer as an aligned table, JSON
//! lines or CSV.

use serde_json::{Value, json};

use crate::http::Client;

/// How `millrace sql` prints rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SqlFormat {
    Table,
    Json,
    Csv,
}

fn cell_text(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Rows (the first is the header) as a table with columns padded to their widest cell;
/// numbers are right-aligned.
pub fn table(rows: &[Vec<Value>]) -> String {
    let Some(header) = rows.first() else {
        return String::new();
    };
    let texts: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(cell_text).collect())
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            texts
                .iter()
                .map(|r| r.get(c).map_or(0, |t| t.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in texts.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, text)| {
                if i > 0 && rows[i][c].is_number() {
                    format!("{text:>width$}", width = widths[c])
                } else {
                    format!("{text:<width$}", width = widths[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("  "));
            out.push('\n');
        }
    }
    let count = rows.len() - 1;
    out.push_str(&format!(
        "({count} row{})\n",
        if count == 1 { "" } else { "s" }
    ));
    out
}

/// Runs a query and prints its answer.
pub fn run(url: &str, query: &str, format: SqlFormat) -> Result<(), String> {
    let client = Client::new(url)?;
    let (result_format, header) = match format {
        SqlFormat::Table => ("array", true),
        SqlFormat::Json => ("objectLines", false),
        SqlFormat::Csv => ("csv", true),
    };
    let request = json!({"query": query, "resultFormat": result_format, "header": header});
    let body = client.post(
        "/druid/v2/sql",
        "application/json",
        request.to_string().as_bytes(),
    )?;
    match format {
        SqlFormat::Table => {
            let rows: Vec<Vec<Value>> = serde_json::from_str(&body)
                .map_err(|e| format!("the answer is not a JSON array of rows: {e}"))?;
            print!("{}", table(&rows));
        }
        SqlFormat::Json | SqlFormat::Csv => {
            print!("{}", body.trim_end_matches('\n').to_string() + "\n")
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_right_align_numbers() {
        let rows = vec![
            vec![json!("username"), json!("posts")],
            vec![json!("mia"), json!(12)],
            vec![json!("rocket"), json!(7)],
        ];
        assert_eq!(
            table(&rows),
            "username  posts\n--------  -----\nmia          12\nrocket        7\n(2 rows)\n"
        );
    }
}
