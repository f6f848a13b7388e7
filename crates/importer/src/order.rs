//! The order a repository import takes tags in (spec §13.3, library-go's `PrioritizeTags`):
//! `latest`; then "minor" versions (`X.Y`, `X.Y-suffix`), newest first; then full semantic
//! versions (`X.Y.Z[-pre]`), newest first; then everything else in byte order. A leading `v` is
//! allowed on versions, and sorts after the same version without it.

use std::cmp::Ordering;

/// The tags, deduplicated (an empty tag counts as `latest`), in import order.
pub fn prioritize_tags(tags: &[String]) -> Vec<String> {
    let mut ranked: Vec<(Rank, &str)> = Vec::with_capacity(tags.len());
    let mut seen = std::collections::HashSet::new();
    for tag in tags {
        let tag = if tag.is_empty() {
            "latest"
        } else {
            tag.as_str()
        };
        if seen.insert(tag) {
            ranked.push((rank(tag), tag));
        }
    }
    ranked.sort_by(|(a, ta), (b, tb)| a.cmp(b).then_with(|| ta.cmp(tb)));
    ranked.into_iter().map(|(_, t)| t.to_string()).collect()
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Latest,
    /// Newest first: the version is compared reversed; `v`-prefixed after plain.
    Minor(std::cmp::Reverse<Version>, bool),
    Full(std::cmp::Reverse<Version>, bool),
    Other,
}

fn rank(tag: &str) -> Rank {
    if tag == "latest" {
        return Rank::Latest;
    }
    let (short, prefixed) = match tag.strip_prefix('v') {
        Some(rest) => (rest, true),
        None => (tag, false),
    };
    if let Some(v) = Version::parse_full(short) {
        return Rank::Full(std::cmp::Reverse(v), prefixed);
    }
    if let Some(v) = Version::parse_minor(short) {
        return Rank::Minor(std::cmp::Reverse(v), prefixed);
    }
    Rank::Other
}

/// A semantic version, compared by semver's precedence rules (build metadata ignored).
#[derive(Debug, PartialEq, Eq)]
struct Version {
    core: [u64; 3],
    pre: Vec<String>,
}

impl Version {
    /// `X.Y.Z[-pre][+build]`, strictly (no leading zeros in numbers).
    fn parse_full(s: &str) -> Option<Version> {
        let s = s.split_once('+').map_or(s, |(v, _)| v);
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (s, None),
        };
        let parts: Vec<&str> = core.split('.').collect();
        if parts.len() != 3 {
            return None;
        }
        let mut numbers = [0u64; 3];
        for (slot, part) in numbers.iter_mut().zip(&parts) {
            *slot = strict_number(part)?;
        }
        let pre = match pre {
            None => Vec::new(),
            Some(p) => prerelease(p)?,
        };
        Some(Version { core: numbers, pre })
    }

    /// `X.Y` or `X.Y-word` (library-go's two "minor" patterns), read as `X.Y.0[-word]`.
    fn parse_minor(s: &str) -> Option<Version> {
        let (core, suffix) = match s.split_once('-') {
            Some((c, w)) => (c, Some(w)),
            None => (s, None),
        };
        let (major, minor) = core.split_once('.')?;
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(major) || !digits(minor) {
            return None;
        }
        let pre = match suffix {
            None => Vec::new(),
            Some(w)
                if !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                vec![w.to_string()]
            }
            Some(_) => return None,
        };
        Some(Version {
            core: [major.parse().ok()?, minor.parse().ok()?, 0],
            pre,
        })
    }
}

fn strict_number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

fn prerelease(p: &str) -> Option<Vec<String>> {
    let ids: Vec<String> = p.split('.').map(str::to_string).collect();
    let valid =
        |id: &String| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    ids.iter().all(valid).then_some(ids)
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core.cmp(&other.core).then_with(|| {
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                // A pre-release sorts before its release.
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_prerelease(&self.pre, &other.pre),
            }
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Numeric identifiers compare as numbers and before alphanumeric ones; a shorter list of
/// equal identifiers comes first.
fn compare_prerelease(a: &[String], b: &[String]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(m), Ok(n)) => m.cmp(&n),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(tags: &[&str]) -> Vec<String> {
        prioritize_tags(&tags.iter().map(|t| t.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn the_order_confirmed_against_openshift() {
        assert_eq!(
            order(&["other", "v1", "3.1", "latest", "abc", "3", "2.0.1"]),
            ["latest", "3.1", "2.0.1", "3", "abc", "other", "v1"]
        );
    }

    #[test]
    fn scenario_42() {
        assert_eq!(
            order(&["latest", "3.1", "3", "abc", "other", "v1", "v2"]),
            ["latest", "3.1", "3", "abc", "other", "v1", "v2"]
        );
    }

    #[test]
    fn versions_newest_first_plain_before_v() {
        assert_eq!(
            order(&["1.2", "v1.10", "1.10", "1.10-beta", "0.9"]),
            ["1.10", "v1.10", "1.10-beta", "1.2", "0.9"]
        );
        assert_eq!(
            order(&["1.0.0-rc.1", "1.0.0", "v2.0.0", "1.0.0-rc.2", "1.0.0-alpha"]),
            ["v2.0.0", "1.0.0", "1.0.0-rc.2", "1.0.0-rc.1", "1.0.0-alpha"]
        );
    }

    #[test]
    fn minor_before_full_and_leading_zeros_are_other() {
        assert_eq!(order(&["1.0.1", "0.1"]), ["0.1", "1.0.1"]);
        assert_eq!(order(&["01.2.3", "1.2.3"]), ["1.2.3", "01.2.3"]);
    }

    #[test]
    fn empty_means_latest_and_duplicates_go() {
        assert_eq!(order(&["", "latest", "b", "a", "b"]), ["latest", "a", "b"]);
    }

    #[test]
    fn numeric_prerelease_before_alphanumeric() {
        assert_eq!(
            order(&["1.0.0-alpha", "1.0.0-1", "1.0.0-alpha.1"]),
            ["1.0.0-alpha.1", "1.0.0-alpha", "1.0.0-1"]
        );
    }
}
