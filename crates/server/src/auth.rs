//! HTTP basic authentication, as Druid's basic security does it: users with a role, listed in a
//! users file with their passwords as salted PBKDF2-HMAC-SHA512 hashes (Druid's algorithm and
//! iteration count). `millrace user` edits the file; a running server reads it again within a
//! second of a change.
//!
//! Authentication is on once the users file exists; from then on it stays on until the server
//! restarts (a removed file locks everyone out rather than opening the server). Roles:
//! `read` may GET anything and run SQL; `admin` may do everything. `/status/health` is open to
//! all, as Druid leaves it, for load balancers.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Druid's PBKDF2 iteration count.
const ITERATIONS: u32 = 10_000;
/// Bytes of salt and of hash (Druid: 512-bit keys).
const SALT_BYTES: usize = 32;
const HASH_BYTES: usize = 64;
/// How often the users file is looked at for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(1);
/// Verified credentials remembered (hashing takes milliseconds); forgotten all at once past it.
const CACHE_ENTRIES: usize = 10_000;
/// Password hashes computed at once (each takes milliseconds of one core).
const HASHES_AT_ONCE: usize = 4;
/// Paths anyone may read, as in Druid's default unsecured paths.
const OPEN_PATHS: [&str; 1] = ["/status/health"];

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// GET any path, and run SQL and native queries.
    Read,
    /// Everything.
    Admin,
}

impl Role {
    /// Whether the role may make a request.
    pub fn allows(self, method: &Method, path: &str) -> bool {
        match self {
            Role::Admin => true,
            Role::Read => {
                method == Method::GET
                    || method == Method::HEAD
                    || (method == Method::POST
                        && matches!(
                            path,
                            "/druid/v2/sql" | "/druid/v2/sql/" | "/druid/v2" | "/druid/v2/"
                        ))
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Role, String> {
        match text {
            "read" => Ok(Role::Read),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role '{other}' (read or admin)")),
        }
    }
}

/// One user's entry in the users file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub role: Role,
    /// Base64 of the salt.
    salt: String,
    /// Base64 of PBKDF2-HMAC-SHA512(password, salt, iterations).
    hash: String,
    iterations: u32,
}

/// The users file: user names and their entries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    pub users: BTreeMap<String, UserEntry>,
}

fn pbkdf2(password: &str, salt: &[u8], iterations: u32) -> [u8; HASH_BYTES] {
    let mut hash = [0u8; HASH_BYTES];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password.as_bytes(), salt, iterations, &mut hash);
    hash
}

/// Compares in time that does not depend on where the bytes differ.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

impl UsersFile {
    /// Reads a users file; `None` when there is none.
    pub fn load(path: &Path) -> Result<Option<UsersFile>, String> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("{}: not a users file: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("reading {}: {e}", path.display())),
        }
    }

    /// Writes the file whole (a reader never sees half of it), readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).expect("users serialize");
        let temporary = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            std::io::Write::write_all(&mut options.open(&temporary)?, text.as_bytes())?;
            std::fs::rename(&temporary, path)
        };
        write().map_err(|e| format!("writing {}: {e}", path.display()))
    }

    /// Adds a user or replaces their password and role.
    pub fn set_user(&mut self, name: &str, password: &str, role: Role) -> Result<(), String> {
        if name.is_empty() || name.contains(':') {
            return Err("a user name must not be empty or contain ':'".into());
        }
        if password.is_empty() {
            return Err("the password must not be empty".into());
        }
        let mut salt = [0u8; SALT_BYTES];
        getrandom::fill(&mut salt).map_err(|e| format!("no random salt: {e}"))?;
        self.users.insert(
            name.to_string(),
            UserEntry {
                role,
                salt: BASE64.encode(salt),
                hash: BASE64.encode(pbkdf2(password, &salt, ITERATIONS)),
                iterations: ITERATIONS,
            },
        );
        Ok(())
    }

    /// The user's role when the password is theirs. An unknown user costs a hash too, so
    /// that answer times do not tell which user names exist.
    pub fn verify(&self, name: &str, password: &str) -> Option<Role> {
        let Some(entry) = self.users.get(name) else {
            pbkdf2(password, &[0; SALT_BYTES], ITERATIONS);
            return None;
        };
        let salt = BASE64.decode(&entry.salt).ok()?;
        let hash = BASE64.decode(&entry.hash).ok()?;
        same_bytes(&pbkdf2(password, &salt, entry.iterations), &hash).then_some(entry.role)
    }
}

/// The users a server checks requests against, read again when the file changes.
pub struct Authenticator {
    path: PathBuf,
    state: Mutex<Loaded>,
    /// Password hashes computed at once: a flood of wrong passwords cannot take every
    /// blocking thread the server's other work needs.
    hashing: tokio::sync::Semaphore,
}

struct Loaded {
    /// None while authentication is off (no users file has been seen).
    users: Option<Arc<UsersFile>>,
    /// The file's modification time and length when read.
    stamp: Option<(SystemTime, u64)>,
    checked: Instant,
    /// `Authorization` header values verified since the file was read, with their role.
    verified: HashMap<String, (String, Role)>,
}

fn stamp_of(path: &Path) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

impl Authenticator {
    /// Reads the users file at `path` if there is one; an unreadable file is an error.
    pub fn open(path: &Path) -> Result<Authenticator, String> {
        let users = UsersFile::load(path)?.map(Arc::new);
        Ok(Authenticator {
            path: path.to_path_buf(),
            state: Mutex::new(Loaded {
                users,
                stamp: stamp_of(path),
                checked: Instant::now(),
                verified: HashMap::new(),
            }),
            hashing: tokio::sync::Semaphore::new(HASHES_AT_ONCE),
        })
    }

    /// Whether requests must authenticate.
    pub fn is_on(&self) -> bool {
        self.lock().users.is_some()
    }

    /// How many users the file lists.
    pub fn user_count(&self) -> usize {
        self.lock().users.as_ref().map_or(0, |u| u.users.len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The users now, after reading the file again if it changed.
    fn users(&self) -> Option<Arc<UsersFile>> {
        let mut state = self.lock();
        if state.checked.elapsed() >= RELOAD_CHECK {
            state.checked = Instant::now();
            let stamp = stamp_of(&self.path);
            if stamp != state.stamp {
                match UsersFile::load(&self.path) {
                    Ok(Some(users)) => {
                        tracing::info!(users = users.users.len(), file = %self.path.display(), "users file read again");
                        state.users = Some(Arc::new(users));
                    }
                    Ok(None) if state.users.is_some() => {
                        tracing::warn!(file = %self.path.display(), "the users file is gone: nobody can sign in until it is back");
                        state.users = Some(Arc::default());
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!("{e}; keeping the users read before"),
                }
                state.stamp = stamp;
                state.verified.clear();
            }
        }
        state.users.clone()
    }

    /// The role of the user an `Authorization` header signs in, and its name; None when the
    /// password is wrong or the user unknown.
    async fn sign_in(
        &self,
        users: Arc<UsersFile>,
        authorization: &str,
        (name, password): (String, String),
    ) -> Option<(String, Role)> {
        if let Some(known) = self.lock().verified.get(authorization) {
            return Some(known.clone());
        }
        let _hashing = self.hashing.acquire().await.ok()?;
        // Hashing takes milliseconds: off the async threads.
        let role = tokio::task::spawn_blocking({
            let (name, users) = (name.clone(), users.clone());
            move || users.verify(&name, &password)
        })
        .await
        .ok()??;
        let mut state = self.lock();
        // Remembered only if the file was not read again meanwhile (a removed user or a
        // changed password must not stay valid).
        if state
            .users
            .as_ref()
            .is_some_and(|now| Arc::ptr_eq(now, &users))
        {
            if state.verified.len() >= CACHE_ENTRIES {
                state.verified.clear();
            }
            state
                .verified
                .insert(authorization.to_string(), (name.clone(), role));
        }
        Some((name, role))
    }
}

/// The user name and password of HTTP basic credentials (the scheme name in any case).
fn basic_credentials(authorization: &str) -> Option<(String, String)> {
    let (scheme, encoded) = authorization.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(BASE64.decode(encoded.trim()).ok()?).ok()?;
    let (name, password) = decoded.split_once(':')?;
    Some((name.to_string(), password.to_string()))
}

fn unauthorized(message: &str) -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, message.to_string()).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"millrace\""),
    );
    response
}

/// The layer that lets a request through when its credentials allow it: 401 without valid
/// credentials, 403 when the user's role does not allow the request. (Error bodies become
/// JSON in the layer around this one.)
pub async fn check(
    State(auth): State<Arc<Authenticator>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if OPEN_PATHS.contains(&path) {
        return next.run(request).await;
    }
    let Some(users) = auth.users() else {
        return next.run(request).await;
    };
    let Some(authorization) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return unauthorized(
            "Unauthorized: this server needs a user name and password (HTTP basic authentication)",
        );
    };
    let Some(credentials) = basic_credentials(authorization) else {
        return unauthorized(
            "Unauthorized: the Authorization header does not hold HTTP basic credentials (Basic, then base64 of user:password)",
        );
    };
    let Some((name, role)) = auth.sign_in(users, authorization, credentials).await else {
        return unauthorized("Unauthorized: wrong user name or password");
    };
    if !role.allows(request.method(), path) {
        let message = format!(
            "Forbidden: user '{name}' has the {} role, which may not {} {path}",
            role.name(),
            request.method()
        );
        return (StatusCode::FORBIDDEN, message).into_response();
    }
    next.run(request).await
}

/// The JSON `millrace user list` prints: names and roles.
pub fn list_json(users: &UsersFile) -> serde_json::Value {
    users
        .users
        .iter()
        .map(|(name, entry)| json!({"user": name, "role": entry.role.name()}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_as_set() {
        let mut users = UsersFile::default();
        users.set_user("ann", "s3cret", Role::Admin).unwrap();
        users.set_user("bob", "s3cret", Role::Read).unwrap();
        assert_eq!(users.verify("ann", "s3cret"), Some(Role::Admin));
        assert_eq!(users.verify("bob", "s3cret"), Some(Role::Read));
        assert_eq!(users.verify("ann", "s3cret "), None);
        assert_eq!(users.verify("carl", "s3cret"), None);
        assert_ne!(
            users.users["ann"].salt, users.users["bob"].salt,
            "each password gets its own salt"
        );
        assert!(users.set_user("a:b", "x", Role::Read).is_err());
        assert!(users.set_user("dan", "", Role::Read).is_err());
    }

    #[test]
    fn basic_credentials_are_read_in_any_case_of_the_scheme() {
        let header = |scheme: &str, credentials: &str| {
            basic_credentials(&format!("{scheme} {}", BASE64.encode(credentials)))
        };
        let ann = Some(("ann".to_string(), "pw:with:colons".to_string()));
        assert_eq!(header("Basic", "ann:pw:with:colons"), ann);
        assert_eq!(header("basic", "ann:pw:with:colons"), ann);
        assert_eq!(header("Bearer", "ann:pw"), None);
        assert_eq!(header("Basic", "no colon"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }

    #[test]
    fn the_read_role_gets_and_queries_only() {
        let sql = Method::POST;
        assert!(Role::Read.allows(&Method::GET, "/druid/indexer/v1/supervisor"));
        assert!(Role::Read.allows(&sql, "/druid/v2/sql"));
        assert!(Role::Read.allows(&sql, "/druid/v2/sql/"));
        assert!(Role::Read.allows(&sql, "/druid/v2"));
        assert!(!Role::Read.allows(&Method::POST, "/start"));
        assert!(!Role::Read.allows(&Method::POST, "/druid/indexer/v1/supervisor"));
        assert!(!Role::Read.allows(&Method::DELETE, "/druid/coordinator/v1/datasources/x"));
        assert!(!Role::Read.allows(&Method::POST, "/topics/t"));
        assert!(Role::Admin.allows(&Method::DELETE, "/druid/coordinator/v1/datasources/x"));
    }
}
