//! Authentication by bearer token from a file (spec §8.4): kube-apiserver's
//! `--token-auth-file` CSV format, `token,user,uid,"group1,group2"`.

use std::collections::HashMap;
use std::path::Path;

use crate::resource::UserInfo;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("reading token file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("token file {path} line {line}: {reason}")]
    Parse {
        path: String,
        line: usize,
        reason: &'static str,
    },
}

#[derive(Clone, Debug, Default)]
pub struct TokenAuthenticator {
    tokens: HashMap<String, UserInfo>,
}

impl TokenAuthenticator {
    pub fn from_file(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|(line, reason)| AuthError::Parse {
            path: path.display().to_string(),
            line,
            reason,
        })
    }

    pub fn parse(text: &str) -> Result<Self, (usize, &'static str)> {
        let mut tokens = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = split_csv(line);
            if fields.len() < 3 {
                return Err((i + 1, "expected at least token,user,uid"));
            }
            let groups = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            tokens.insert(
                fields[0].clone(),
                UserInfo {
                    name: fields[1].clone(),
                    uid: fields[2].clone(),
                    groups,
                    ..UserInfo::default()
                },
            );
        }
        Ok(TokenAuthenticator { tokens })
    }

    /// The user of a known bearer token.
    pub fn user(&self, token: &str) -> Option<UserInfo> {
        Some(self.tokens.get(token)?.clone().authenticated())
    }
}

/// Splits one CSV line, honoring double quotes.
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|s| s.trim().to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kube_token_files() {
        let a = TokenAuthenticator::parse(
            "# admin\nsecret,admin,u1,\"system:masters,dev\"\nother,bob,u2\n",
        )
        .expect("parse");
        let u = a.user("secret").expect("admin");
        assert_eq!(u.name, "admin");
        assert_eq!(
            u.groups,
            vec!["system:masters", "dev", "system:authenticated"]
        );
        assert_eq!(a.user("other").expect("bob").uid, "u2");
        assert!(a.user("nope").is_none());
        assert_eq!(TokenAuthenticator::parse("x,y").expect_err("short").0, 1);
    }
}
