//! Subjects and subject patterns with NATS semantics (DESIGN.md §4).
//!
//! A CloudEvent's `type` (`recovery.succeeded`) is its subject: dot-separated tokens. On the
//! wire a backend puts its prefix in front (`metaloop.recovery.succeeded`). Patterns match
//! whole tokens only: `*` is exactly one token, `>` is one or more trailing tokens, and there
//! is never a string-prefix match (`meta.*` does not match `metadata.x`).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a subject, pattern or prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {text:?}: {reason}")]
pub struct SubjectError {
    /// `subject`, `pattern` or `prefix`.
    pub kind: &'static str,
    /// The refused text.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

fn error(kind: &'static str, text: &str, reason: impl Into<String>) -> SubjectError {
    SubjectError {
        kind,
        text: text.to_owned(),
        reason: reason.into(),
    }
}

/// Checks the characters of one token; wildcards are judged by the caller.
fn check_token_chars(
    kind: &'static str,
    text: &str,
    index: usize,
    token: &str,
) -> Result<(), SubjectError> {
    if token.is_empty() {
        return Err(error(kind, text, format!("token {} is empty", index + 1)));
    }
    if let Some(c) = token.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(error(
            kind,
            text,
            format!(
                "token {} contains {c:?} (no whitespace or control characters)",
                index + 1
            ),
        ));
    }
    Ok(())
}

/// A concrete subject: non-empty dot-separated tokens without wildcards, e.g.
/// `recovery.succeeded`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subject(String);

impl Subject {
    /// Validates a subject.
    pub fn new(text: impl Into<String>) -> Result<Self, SubjectError> {
        let text = text.into();
        for (i, token) in text.split('.').enumerate() {
            check_token_chars("subject", &text, i, token)?;
            if token.contains(['*', '>']) {
                return Err(error(
                    "subject",
                    &text,
                    format!(
                        "token {} contains a wildcard; a subject names one thing",
                        i + 1
                    ),
                ));
            }
        }
        Ok(Subject(text))
    }

    /// The subject text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its tokens.
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }

    /// Whether the supervisor itself publishes on this subject — `meta.*`: directives and
    /// messages to humans — so that its own consumer of the bus skips it. The adapters'
    /// answers to directives, `meta.directive.applied` and `meta.directive.refused`, are
    /// inbound.
    pub fn is_supervisor_output(&self) -> bool {
        self.0.starts_with("meta.")
            && self.0 != "meta.directive.applied"
            && self.0 != "meta.directive.refused"
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Subject {
    type Error = SubjectError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Subject::new(value)
    }
}

impl From<Subject> for String {
    fn from(s: Subject) -> String {
        s.0
    }
}

/// One token of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum PatternToken {
    Literal(String),
    /// `*`: exactly one token.
    One,
    /// `>`: one or more trailing tokens.
    Rest,
}

/// A subscription pattern: `recovery.*`, `decision.>`, `>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SubjectPattern {
    text: String,
    tokens: Vec<PatternToken>,
}

impl SubjectPattern {
    /// Validates a pattern: `*` and `>` must be whole tokens and `>` must be the last one.
    pub fn new(text: impl Into<String>) -> Result<Self, SubjectError> {
        let text = text.into();
        let parts: Vec<&str> = text.split('.').collect();
        let mut tokens = Vec::with_capacity(parts.len());
        for (i, token) in parts.iter().enumerate() {
            check_token_chars("pattern", &text, i, token)?;
            let parsed = match *token {
                "*" => PatternToken::One,
                ">" if i + 1 == parts.len() => PatternToken::Rest,
                ">" => {
                    return Err(error(
                        "pattern",
                        &text,
                        format!("'>' is token {} but must be the last token", i + 1),
                    ));
                }
                t if t.contains(['*', '>']) => {
                    return Err(error(
                        "pattern",
                        &text,
                        format!(
                            "token {} mixes a wildcard with other characters ({t:?}); '*' and '>' must be whole tokens",
                            i + 1
                        ),
                    ));
                }
                t => PatternToken::Literal(t.to_owned()),
            };
            tokens.push(parsed);
        }
        Ok(SubjectPattern { text, tokens })
    }

    /// The pattern matching every subject.
    pub fn all() -> Self {
        SubjectPattern::new(">").expect("'>' is a valid pattern")
    }

    /// A pattern that matches exactly `subject`.
    pub fn exact(subject: &Subject) -> Self {
        SubjectPattern {
            text: subject.0.clone(),
            tokens: subject
                .tokens()
                .map(|t| PatternToken::Literal(t.to_owned()))
                .collect(),
        }
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when `subject` matches, token by token.
    pub fn matches(&self, subject: &Subject) -> bool {
        self.matches_tokens(subject.tokens())
    }

    /// Like [`SubjectPattern::matches`] for unvalidated text (invalid subjects never match).
    pub fn matches_str(&self, subject: &str) -> bool {
        Subject::new(subject).is_ok_and(|s| self.matches(&s))
    }

    fn matches_tokens<'a>(&self, mut subject: impl Iterator<Item = &'a str>) -> bool {
        for token in &self.tokens {
            match token {
                PatternToken::Rest => return subject.next().is_some(),
                PatternToken::One => {
                    if subject.next().is_none() {
                        return false;
                    }
                }
                PatternToken::Literal(l) => {
                    if subject.next() != Some(l.as_str()) {
                        return false;
                    }
                }
            }
        }
        subject.next().is_none()
    }
}

impl fmt::Display for SubjectPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl TryFrom<String> for SubjectPattern {
    type Error = SubjectError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        SubjectPattern::new(value)
    }
}

impl From<SubjectPattern> for String {
    fn from(p: SubjectPattern) -> String {
        p.text
    }
}

impl std::str::FromStr for SubjectPattern {
    type Err = SubjectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SubjectPattern::new(s)
    }
}

impl std::str::FromStr for Subject {
    type Err = SubjectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Subject::new(s)
    }
}

/// The first token of every wire subject of one deployment (`metaloop` →
/// `metaloop.recovery.succeeded`), so that several deployments can share a NATS account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SubjectPrefix(String);

impl SubjectPrefix {
    /// Validates a prefix: exactly one token, no wildcards.
    pub fn new(text: impl Into<String>) -> Result<Self, SubjectError> {
        let text = text.into();
        if text.contains('.') {
            return Err(error("prefix", &text, "must be one token (no dots)"));
        }
        check_token_chars("prefix", &text, 0, &text)?;
        if text.contains(['*', '>']) {
            return Err(error("prefix", &text, "must not contain '*' or '>'"));
        }
        Ok(SubjectPrefix(text))
    }

    /// The prefix text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `<prefix>.<subject>`.
    pub fn wire_subject(&self, subject: &Subject) -> String {
        format!("{}.{}", self.0, subject.0)
    }

    /// `<prefix>.<pattern>`.
    pub fn wire_pattern(&self, pattern: &SubjectPattern) -> String {
        format!("{}.{}", self.0, pattern.text)
    }

    /// The subject of a wire subject, `None` when it does not carry this prefix.
    pub fn strip(&self, wire: &str) -> Option<Subject> {
        let rest = wire.strip_prefix(self.0.as_str())?.strip_prefix('.')?;
        Subject::new(rest).ok()
    }
}

impl Default for SubjectPrefix {
    fn default() -> Self {
        SubjectPrefix("metaloop".into())
    }
}

impl fmt::Display for SubjectPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for SubjectPrefix {
    type Error = SubjectError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        SubjectPrefix::new(value)
    }
}

impl From<SubjectPrefix> for String {
    fn from(p: SubjectPrefix) -> String {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, subject: &str) -> bool {
        SubjectPattern::new(pattern)
            .unwrap()
            .matches(&Subject::new(subject).unwrap())
    }

    #[test]
    fn star_is_exactly_one_token() {
        assert!(m("recovery.*", "recovery.succeeded"));
        assert!(m("recovery.*", "recovery.failed"));
        assert!(!m("recovery.*", "recovery.a.b"));
        assert!(!m("recovery.*", "recovery"));
        assert!(m("*.made", "decision.made"));
        assert!(m("meta.*.applied", "meta.directive.applied"));
        assert!(!m("meta.*.applied", "meta.directive.refused"));
    }

    #[test]
    fn never_a_string_prefix_match() {
        assert!(!m("meta.*", "metadata.x"));
        assert!(!m("meta.>", "metadata.x"));
        assert!(!m("recovery.succeeded", "recovery.succeededx"));
        assert!(!m("recovery", "recovery.succeeded"));
        assert!(m("meta.*", "meta.summary"));
    }

    #[test]
    fn greater_than_is_one_or_more_trailing_tokens() {
        assert!(m("decision.>", "decision.made"));
        assert!(m("decision.>", "decision.a.b"));
        assert!(!m("decision.>", "decision"));
        assert!(!m("decision.>", "decisions.made"));
        assert!(m(">", "recovery.succeeded"));
        assert!(m(">", "x"));
        assert!(m(">", "meta.directive.adjust_threshold"));
        assert!(m("*.>", "a.b"));
        assert!(!m("*.>", "a"));
    }

    #[test]
    fn invalid_patterns_are_rejected_with_a_reason() {
        for (bad, why) in [
            ("a.>.b", "must be the last token"),
            ("a..b", "token 2 is empty"),
            ("*x", "must be whole tokens"),
            ("x>", "must be whole tokens"),
            ("", "token 1 is empty"),
            (".a", "token 1 is empty"),
            ("a.", "token 2 is empty"),
            ("a b", "whitespace"),
        ] {
            let err = SubjectPattern::new(bad).unwrap_err();
            assert!(
                err.reason.contains(why),
                "{bad:?}: reason {:?} should mention {why:?}",
                err.reason
            );
            assert!(err.to_string().contains(&format!("{bad:?}")));
        }
    }

    #[test]
    fn subjects_have_no_wildcards_or_empty_tokens() {
        assert!(Subject::new("recovery.succeeded").is_ok());
        assert!(Subject::new("meta.directive.adjust_threshold").is_ok());
        for bad in ["a.*", "a.>", "a..b", "", "a\tb"] {
            assert!(Subject::new(bad).is_err(), "{bad:?}");
        }
        assert!(!SubjectPattern::all().matches_str("a..b"));
    }

    #[test]
    fn prefix_wraps_and_strips() {
        let p = SubjectPrefix::new("metaloop").unwrap();
        let s = Subject::new("recovery.succeeded").unwrap();
        assert_eq!(p.wire_subject(&s), "metaloop.recovery.succeeded");
        assert_eq!(p.strip("metaloop.recovery.succeeded"), Some(s));
        assert_eq!(p.strip("metaloopx.recovery.succeeded"), None);
        assert_eq!(p.strip("metaloop"), None);
        assert_eq!(
            p.wire_pattern(&SubjectPattern::new("decision.>").unwrap()),
            "metaloop.decision.>"
        );
        assert!(SubjectPrefix::new("a.b").is_err());
        assert!(SubjectPrefix::new("*").is_err());
        assert!(SubjectPrefix::new("").is_err());
    }

    #[test]
    fn exact_pattern_matches_only_its_subject() {
        let s = Subject::new("kpi.reported").unwrap();
        let p = SubjectPattern::exact(&s);
        assert!(p.matches(&s));
        assert!(!p.matches_str("kpi.reported.x"));
    }

    #[test]
    fn the_supervisors_own_subjects_are_told_from_inbound_ones() {
        let own = |s: &str| Subject::new(s).unwrap().is_supervisor_output();
        assert!(own("meta.directive.adjust_threshold"));
        assert!(own("meta.summary"));
        assert!(!own("meta.directive.applied"));
        assert!(!own("meta.directive.refused"));
        assert!(!own("recovery.succeeded"));
        assert!(!own("metadata.x"));
    }
}
