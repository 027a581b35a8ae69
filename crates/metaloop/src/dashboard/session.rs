//! Signing in to the dashboard with an API token: the token is checked once against the same
//! `[[tokens]]` as the API, and the browser gets a random session id in an HTTP-only,
//! SameSite=Strict cookie. Every form carries the session's CSRF token, checked on each post;
//! posts whose `Origin` is another site are refused as well.

use crate::api::auth::Principal;
use axum::http::{HeaderMap, HeaderValue, header};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "metaloop_session";
/// A session unused this long is forgotten.
pub const IDLE: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most (the least recently used go first).
pub const MAX_SESSIONS: usize = 10_000;

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    /// Put in every form and checked on every post.
    pub csrf: String,
    last_seen: Instant,
}

/// The server's sessions, by the SHA-256 of their id (a lookup's timing says nothing about an
/// id).
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<[u8; 32], Session>>);

fn random_hex() -> Result<String, getrandom::Error> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a session for `principal`; returns its id (for the cookie).
    pub fn open(&self, principal: Principal) -> Result<String, getrandom::Error> {
        let id = random_hex()?;
        let session = Session {
            principal,
            csrf: random_hex()?,
            last_seen: Instant::now(),
        };
        let mut map = self.map();
        map.retain(|_, s| s.last_seen.elapsed() < IDLE);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(key(&id), session);
        Ok(id)
    }

    /// The session the request's cookie names, if it is open.
    pub fn find(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        let mut map = self.map();
        let k = key(&id);
        let s = map.get_mut(&k)?;
        if s.last_seen.elapsed() >= IDLE {
            map.remove(&k);
            return None;
        }
        s.last_seen = Instant::now();
        Some(s.clone())
    }

    /// Closes the session the request's cookie names.
    pub fn close(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, COOKIE) {
            self.map().remove(&key(&id));
        }
    }

    /// Open sessions.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// True without any open session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Session {
    /// True when `presented` is this session's CSRF token (compared in constant time).
    pub fn csrf_ok(&self, presented: &str) -> bool {
        let (a, b) = (self.csrf.as_bytes(), presented.as_bytes());
        a.len() == b.len() && bool::from(a.ct_eq(b))
    }
}

/// The value of cookie `name` in the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
}

/// The `Set-Cookie` value that stores a session id.
pub fn set_cookie(id: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        IDLE.as_secs()
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("metaloop_session=; Path=/"))
}

/// The `Set-Cookie` value that forgets the session.
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("metaloop_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// False when a post comes from another site: its `Origin` (or, without one, its
/// `Sec-Fetch-Site`) names a different origin than the `Host` it was sent to.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    // "null" is what a browser sends under some referrer policies and from sandboxes: the
    // fetch metadata decides then
    if let Some(origin) = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|o| *o != "null")
    {
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        return matches!((authority, host), (Some(a), Some(h)) if a == h);
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some(site) => site == "same-origin" || site == "none",
        None => true, // not a browser: no cookie was sent by one on someone else's behalf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    fn alice() -> Principal {
        Principal {
            name: "alice".into(),
            roles: vec![Role::Viewer],
        }
    }

    fn with_cookie(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn a_session_is_found_by_its_cookie_and_closed() {
        let s = Sessions::default();
        let id = s.open(alice()).unwrap();
        let h = with_cookie(&format!("other=1; {COOKIE}={id}; x=y"));
        let found = s.find(&h).unwrap();
        assert_eq!(found.principal.name, "alice");
        assert!(found.csrf_ok(&found.csrf.clone()));
        assert!(!found.csrf_ok(""));
        assert!(!found.csrf_ok(&found.csrf[1..]));
        assert!(s.find(&with_cookie(&format!("{COOKIE}={id}x"))).is_none());
        assert!(s.find(&HeaderMap::new()).is_none());
        s.close(&h);
        assert!(s.find(&h).is_none());
        assert!(s.is_empty());
    }

    #[test]
    fn each_session_has_its_own_id_and_csrf_token() {
        let s = Sessions::default();
        let a = s.open(alice()).unwrap();
        let b = s.open(alice()).unwrap();
        assert_ne!(a, b);
        let ca = s.find(&with_cookie(&format!("{COOKIE}={a}"))).unwrap().csrf;
        let cb = s.find(&with_cookie(&format!("{COOKIE}={b}"))).unwrap().csrf;
        assert_ne!(ca, cb);
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn posts_from_another_origin_are_told_apart() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:7171"));
        assert!(
            same_origin(&h),
            "no Origin, no Sec-Fetch-Site: not a browser"
        );
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:7171"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(
            same_origin(&h),
            "an opaque origin, but the browser says same-origin"
        );
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h));
    }

    #[test]
    fn the_cookie_is_http_only_and_same_site_strict() {
        let c = set_cookie("abc");
        let c = c.to_str().unwrap();
        assert!(c.starts_with("metaloop_session=abc;"));
        assert!(c.contains("HttpOnly"));
        assert!(c.contains("SameSite=Strict"));
        assert!(clear_cookie().to_str().unwrap().contains("Max-Age=0"));
    }
}
