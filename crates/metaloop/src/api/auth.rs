//! Bearer tokens → principals with roles. Tokens are stored as SHA-256 hashes and compared in
//! constant time against every configured hash.

use super::{ApiError, ApiState};
use crate::config::{Role, TokenEntry};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Who is calling, and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub roles: Vec<Role>,
}

impl Principal {
    /// Fails with 403 unless the principal has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if self.roles.iter().any(|r| roles.contains(r)) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "{} has roles {:?}; this needs one of {:?}",
                self.name, self.roles, roles
            )))
        }
    }
}

/// Roles that may read.
pub const READERS: &[Role] = &[Role::Viewer, Role::Operator, Role::Approver, Role::Admin];
/// Roles that may approve or reject directives.
pub const APPROVERS: &[Role] = &[Role::Approver, Role::Admin];
/// Roles that may enable or disable policies.
pub const OPERATORS: &[Role] = &[Role::Operator, Role::Admin];
/// Roles that may register policies.
pub const ADMINS: &[Role] = &[Role::Admin];
/// Roles that may send spine events.
pub const ADAPTERS: &[Role] = &[Role::Adapter];

struct Token {
    principal: String,
    roles: Vec<Role>,
    sha256: [u8; 32],
}

/// The configured tokens.
#[derive(Default)]
pub struct Tokens(Vec<Token>);

impl Tokens {
    /// From the `[[tokens]]` config (already validated).
    pub fn from_config(entries: &[TokenEntry]) -> Result<Tokens, String> {
        let mut out = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let mut h = [0u8; 32];
            for (j, b) in h.iter_mut().enumerate() {
                *b = u8::from_str_radix(e.sha256.get(2 * j..2 * j + 2).unwrap_or("zz"), 16)
                    .map_err(|_| format!("tokens[{i}].sha256 is not 64 hex characters"))?;
            }
            out.push(Token {
                principal: e.principal.clone(),
                roles: e.roles.clone(),
                sha256: h,
            });
        }
        Ok(Tokens(out))
    }

    /// The principal a bearer token belongs to. Every configured hash is compared, in
    /// constant time, whatever matches first.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found: Option<&Token> = None;
        for t in &self.0 {
            let eq: bool = t.sha256.ct_eq(&presented).into();
            if eq && found.is_none() {
                found = Some(t);
            }
        }
        found.map(|t| Principal {
            name: t.principal.clone(),
            roles: t.roles.clone(),
        })
    }
}

impl FromRequestParts<ApiState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::Unauthorized("missing Authorization: Bearer <token>".into())
            })?;
        let text = header
            .to_str()
            .map_err(|_| ApiError::Unauthorized("Authorization header is not text".into()))?;
        let token = text.strip_prefix("Bearer ").ok_or_else(|| {
            ApiError::Unauthorized("Authorization must be \"Bearer <token>\"".into())
        })?;
        state
            .tokens
            .authenticate(token.trim())
            .ok_or_else(|| ApiError::Unauthorized("unknown token".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_by_hash() {
        let hash: String = Sha256::digest(b"s3cret")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let tokens = Tokens::from_config(&[TokenEntry {
            principal: "alice".into(),
            roles: vec![Role::Approver],
            sha256: hash,
        }])
        .unwrap();
        let p = tokens.authenticate("s3cret").unwrap();
        assert_eq!(p.name, "alice");
        assert!(p.require(APPROVERS).is_ok());
        assert!(matches!(p.require(ADMINS), Err(ApiError::Forbidden(_))));
        assert_eq!(tokens.authenticate("s3cret "), None);
        assert_eq!(tokens.authenticate(""), None);
    }
}
