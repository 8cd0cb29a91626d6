//! A small blocking client for a running millrace server (`--url`).

use std::time::Duration;

use serde_json::Value;

/// The server's base URL and an HTTP agent.
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

/// The message of an error answer: Druid's `errorMessage`, or `error`, or the body itself.
fn error_message(status: u16, body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("errorMessage").or_else(|| v.get("error")))
        .and_then(|m| m.as_str())
        .map(String::from)
        .unwrap_or_else(|| body.trim().to_string());
    format!("the server answered {status}: {message}")
}

impl Client {
    pub fn new(url: &str) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .build()
            .into();
        Client {
            base: url.trim_end_matches('/').to_string(),
            agent,
        }
    }

    fn answer(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<String, String> {
        let mut response = response.map_err(|e| format!("cannot reach {}: {e}", self.base))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_string()
            .map_err(|e| format!("reading the answer of {}: {e}", self.base))?;
        if status >= 400 {
            return Err(error_message(status, &body));
        }
        Ok(body)
    }

    /// GETs a path; the body of a success, or the server's error message.
    pub fn get(&self, path: &str) -> Result<String, String> {
        self.answer(self.agent.get(format!("{}{path}", self.base)).call())
    }

    /// POSTs a body of a content type.
    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Result<String, String> {
        self.answer(
            self.agent
                .post(format!("{}{path}", self.base))
                .header("Content-Type", content_type)
                .send(body),
        )
    }

    /// GETs a path and parses the JSON answer.
    pub fn get_json(&self, path: &str) -> Result<Value, String> {
        serde_json::from_str(&self.get(path)?).map_err(|e| format!("the answer is not JSON: {e}"))
    }
}

/// A path segment with characters that need it percent-encoded.
pub fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
