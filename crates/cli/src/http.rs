//! A small blocking client for a running millrace server (`--url`).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

/// The server's base URL, an HTTP agent, and the credentials to send.
pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// The `Authorization` header value, when the URL names a user.
    authorization: Option<String>,
}

/// Splits `user[:password]@` off a URL; a missing password comes from `MILLRACE_PASSWORD`.
/// Returns the URL without them and the basic `Authorization` header value.
fn split_credentials(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return (url.to_string(), None);
    };
    let (user, password) = match rest[..at].split_once(':') {
        Some((user, password)) => (percent_decode(user), percent_decode(password)),
        None => (
            percent_decode(&rest[..at]),
            std::env::var("MILLRACE_PASSWORD").unwrap_or_default(),
        ),
    };
    let credentials = format!("{user}:{password}");
    let header = format!("Basic {}", BASE64.encode(credentials));
    (format!("{scheme}://{}", &rest[at + 1..]), Some(header))
}

/// Decodes `%XX` escapes (URL user names and passwords may carry them).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // Two hex digits; from_str_radix alone would also take a sign.
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The agent's TLS settings: Mozilla's root certificates, or the PEM certificates in the file
/// `MILLRACE_CA_CERT` names (for a server with a self-signed certificate).
fn tls_config() -> Result<ureq::tls::TlsConfig, String> {
    let Some(file) = std::env::var_os("MILLRACE_CA_CERT") else {
        return Ok(ureq::tls::TlsConfig::default());
    };
    let pem =
        std::fs::read(&file).map_err(|e| format!("MILLRACE_CA_CERT {}: {e}", file.display()))?;
    let certificates: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()
        .map_err(|e| format!("MILLRACE_CA_CERT {}: {e}", file.display()))?;
    Ok(ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certificates)))
        .build())
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
    /// A client of the server at `url`, which may carry `user:password@`.
    pub fn new(url: &str) -> Result<Client, String> {
        let (base, authorization) = split_credentials(url);
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .tls_config(tls_config()?)
            .build()
            .into();
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            agent,
            authorization,
        })
    }

    fn with_credentials<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.authorization {
            Some(value) => request.header("Authorization", value),
            None => request,
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
        self.answer(
            self.with_credentials(self.agent.get(format!("{}{path}", self.base)))
                .call(),
        )
    }

    /// POSTs a body of a content type.
    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Result<String, String> {
        self.answer(
            self.with_credentials(self.agent.post(format!("{}{path}", self.base)))
                .header("Content-Type", content_type)
                .send(body),
        )
    }

    /// DELETEs a path.
    pub fn delete(&self, path: &str) -> Result<String, String> {
        self.answer(
            self.with_credentials(self.agent.delete(format!("{}{path}", self.base)))
                .call(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_off_the_url_as_a_basic_header() {
        assert_eq!(
            split_credentials("http://127.0.0.1:8888"),
            ("http://127.0.0.1:8888".into(), None)
        );
        let (base, header) = split_credentials("https://ann:p%40ss@db.example:8888/x@y");
        assert_eq!(base, "https://db.example:8888/x@y");
        assert_eq!(
            header.unwrap(),
            format!("Basic {}", BASE64.encode("ann:p@ss"))
        );
        assert_eq!(percent_decode("a%2b%+5%"), "a+%+5%");
    }
}
