//! The subset of containers-registries.conf(5) version 2 that decides where an import pulls
//! from: `[[registry]]` tables (`prefix`, `location`, `insecure`, `blocked`,
//! `mirror-by-digest-only`) and their `[[registry.mirror]]` tables (`location`, `insecure`,
//! `pull-from-mirror`). Every other key is ignored, as podman ignores keys it does not know.
//!
//! Deliberate differences from containers/image:
//! - A port is part of the host: prefix `example.com` does not match `example.com:5000/app`
//!   (containers/image matches it and calls that behaviour unintended).
//! - A `*.example.com` prefix matches hosts with no port only; `*.example.com:5000` matches
//!   that port only.
//! - A prefix without a location is its own location, rather than an error.
//! - A blocked entry with mirrors is not refused: its mirrors are tried and its own location
//!   never is (OpenShift's "never contact source"). Only when no mirror is allowed for the
//!   pull kind is the import refused.

use crate::hosts::split_port;
use serde::de::IgnoredAny;
use serde::Deserialize;

/// A parsed registries.conf: the `[[registry]]` tables in file order.
#[derive(Clone, Debug, Default)]
pub struct RegistriesConf {
    registries: Vec<Registry>,
}

/// Where an import may pull a repository from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullPlan {
    /// The matching entry is blocked and has no mirror usable for this pull.
    Blocked,
    /// To be tried in order: the allowed mirrors, then the source itself unless it is blocked.
    Sources(Vec<PullSource>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullSource {
    /// `host[:port]/path`, with the matched prefix replaced by the mirror's or entry's location.
    pub repository: String,
    pub insecure: bool,
    pub mirror: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistriesConfError {
    #[error("invalid registries.conf: {0}")]
    Toml(String),
    #[error(
        "registries.conf uses the version 1 [registries.*] tables, which are not supported; \
         use [[registry]] tables"
    )]
    Version1,
    #[error("[[registry]] #{index}: neither prefix nor location is set")]
    MissingLocation { index: usize },
    #[error("[[registry]] #{index}: {field} {value:?} must not include a tag or digest")]
    TagOrDigest {
        index: usize,
        field: &'static str,
        value: String,
    },
    #[error("[[registry]] #{index}: {field} {value:?} is invalid: {reason}")]
    InvalidValue {
        index: usize,
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("[[registry]] #{index}: [[registry.mirror]] #{mirror} has no location")]
    MissingMirrorLocation { index: usize, mirror: usize },
    #[error(
        "[[registry]] #{index}: [[registry.mirror]] #{mirror}: invalid pull-from-mirror \
         {value:?} (expected \"all\", \"digest-only\" or \"tag-only\")"
    )]
    InvalidPullFromMirror {
        index: usize,
        mirror: usize,
        value: String,
    },
    #[error(
        "[[registry]] #{index}: mirror-by-digest-only and [[registry.mirror]] #{mirror}'s \
         pull-from-mirror cannot both be set"
    )]
    ConflictingMirrorPolicy { index: usize, mirror: usize },
}

#[derive(Clone, Debug)]
struct Registry {
    prefix: Prefix,
    /// Length of the prefix as written (normalized); containers/image picks the longest.
    rank: usize,
    /// `None` only for a wildcard prefix without a location: the matched host itself serves.
    location: Option<String>,
    insecure: bool,
    blocked: bool,
    mirror_by_digest_only: bool,
    mirrors: Vec<Mirror>,
}

#[derive(Clone, Debug)]
enum Prefix {
    /// `host[:port][/path]`; `path` has no surrounding `/` and is empty for a whole host.
    Exact { host: String, path: String },
    /// `*.domain[:port]`: any number of extra DNS labels, host only.
    Wildcard {
        domain: String,
        port: Option<String>,
    },
}

#[derive(Clone, Debug)]
struct Mirror {
    location: String,
    insecure: bool,
    pull: MirrorPull,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MirrorPull {
    All,
    DigestOnly,
    TagOnly,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawConf {
    #[serde(rename = "registry")]
    registries: Vec<RawRegistry>,
    /// Only looked at to refuse a version 1 file, which would otherwise parse as empty and
    /// silently drop its blocks and insecure flags.
    #[serde(rename = "registries")]
    version1: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
struct RawRegistry {
    prefix: Option<String>,
    location: Option<String>,
    insecure: bool,
    blocked: bool,
    mirror_by_digest_only: bool,
    #[serde(rename = "mirror")]
    mirrors: Vec<RawMirror>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
struct RawMirror {
    location: Option<String>,
    insecure: bool,
    pull_from_mirror: Option<String>,
}

impl RegistriesConf {
    pub fn parse(text: &str) -> Result<RegistriesConf, RegistriesConfError> {
        let raw = toml::from_str::<RawConf>(text)
            .map_err(|e| RegistriesConfError::Toml(e.to_string().trim_end().to_owned()))?;
        if raw.version1.is_some() {
            return Err(RegistriesConfError::Version1);
        }
        let registries = raw
            .registries
            .into_iter()
            .enumerate()
            .map(|(i, registry)| Registry::from_raw(i + 1, registry))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RegistriesConf { registries })
    }

    /// Where to pull `repository` (`host[:port]/path`, no tag or digest) from, in order;
    /// `by_digest` says whether the pull is by digest.
    pub fn pull_sources(&self, repository: &str, by_digest: bool) -> PullPlan {
        let trimmed = repository.trim().trim_end_matches('/');
        let (host, path) = trimmed.split_once('/').unwrap_or((trimmed, ""));
        let host = host.to_ascii_lowercase();

        let mut best: Option<(&Registry, &str)> = None;
        for registry in &self.registries {
            let Some(rest) = registry.prefix.matched_rest(&host, path) else {
                continue;
            };
            // Strictly longer only: among equal prefixes the first table wins.
            let better = match best {
                None => true,
                Some((current, _)) => registry.rank > current.rank,
            };
            if better {
                best = Some((registry, rest));
            }
        }

        let Some((registry, rest)) = best else {
            return PullPlan::Sources(vec![PullSource {
                repository: repository.to_owned(),
                insecure: false,
                mirror: false,
            }]);
        };

        let mut sources: Vec<PullSource> = registry
            .mirrors
            .iter()
            .filter(|mirror| registry.mirror_allowed(mirror, by_digest))
            .map(|mirror| PullSource {
                repository: join(&mirror.location, rest),
                insecure: mirror.insecure,
                mirror: true,
            })
            .collect();
        if registry.blocked {
            if sources.is_empty() {
                return PullPlan::Blocked;
            }
            return PullPlan::Sources(sources);
        }
        let primary = match &registry.location {
            Some(location) => join(location, rest),
            None => join(&host, rest),
        };
        sources.push(PullSource {
            repository: primary,
            insecure: registry.insecure,
            mirror: false,
        });
        PullPlan::Sources(sources)
    }

    /// Whether an entry with `insecure = true` covers `host` (`host[:port]`): its prefix is the
    /// host, a path under it, or a wildcard matching it. Such a flag is taken to apply to the
    /// whole host, since TLS settings cannot differ per repository.
    pub fn is_insecure_registry(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        self.registries
            .iter()
            .any(|registry| registry.insecure && registry.prefix.covers_host(&host))
    }
}

impl Registry {
    fn from_raw(index: usize, raw: RawRegistry) -> Result<Registry, RegistriesConfError> {
        let RawRegistry {
            prefix: raw_prefix,
            location: raw_location,
            insecure,
            blocked,
            mirror_by_digest_only,
            mirrors: raw_mirrors,
        } = raw;

        let location = non_empty(raw_location.as_deref())
            .map(|value| parse_location(index, "location", value))
            .transpose()?;
        let (prefix, rank) = match non_empty(raw_prefix.as_deref()) {
            Some(value) => parse_prefix(index, value)?,
            None => {
                let location = location
                    .as_deref()
                    .ok_or(RegistriesConfError::MissingLocation { index })?;
                parse_prefix(index, location)?
            }
        };
        let location = match (&prefix, location) {
            (_, Some(location)) => Some(location),
            (Prefix::Exact { host, path }, None) => Some(join(host, path)),
            (Prefix::Wildcard { .. }, None) => None,
        };

        let mut mirrors = Vec::with_capacity(raw_mirrors.len());
        for (i, raw_mirror) in raw_mirrors.into_iter().enumerate() {
            let mirror = i + 1;
            let value = non_empty(raw_mirror.location.as_deref())
                .ok_or(RegistriesConfError::MissingMirrorLocation { index, mirror })?;
            let mirror_location = parse_location(index, "mirror location", value)?;
            let pull = match non_empty(raw_mirror.pull_from_mirror.as_deref()) {
                None => MirrorPull::All,
                Some(value) => {
                    let pull = match value {
                        "all" => MirrorPull::All,
                        "digest-only" => MirrorPull::DigestOnly,
                        "tag-only" => MirrorPull::TagOnly,
                        other => {
                            return Err(RegistriesConfError::InvalidPullFromMirror {
                                index,
                                mirror,
                                value: other.to_owned(),
                            })
                        }
                    };
                    // Two policies for the same mirror would leave one of them silently
                    // ignored; containers/image refuses the combination too.
                    if mirror_by_digest_only {
                        return Err(RegistriesConfError::ConflictingMirrorPolicy { index, mirror });
                    }
                    pull
                }
            };
            mirrors.push(Mirror {
                location: mirror_location,
                insecure: raw_mirror.insecure,
                pull,
            });
        }

        Ok(Registry {
            prefix,
            rank,
            location,
            insecure,
            blocked,
            mirror_by_digest_only,
            mirrors,
        })
    }

    fn mirror_allowed(&self, mirror: &Mirror, by_digest: bool) -> bool {
        if self.mirror_by_digest_only {
            return by_digest;
        }
        match mirror.pull {
            MirrorPull::All => true,
            MirrorPull::DigestOnly => by_digest,
            MirrorPull::TagOnly => !by_digest,
        }
    }
}

impl Prefix {
    /// When the prefix matches the reference `host` (lower-cased) and `path`, the part of the
    /// path that follows it (no leading `/`; empty when the prefix is the whole reference).
    fn matched_rest<'p>(&self, host: &str, path: &'p str) -> Option<&'p str> {
        match self {
            Prefix::Exact {
                host: prefix_host,
                path: prefix_path,
            } => {
                if prefix_host != host {
                    return None;
                }
                if prefix_path.is_empty() {
                    return Some(path);
                }
                let rest = path.strip_prefix(prefix_path.as_str())?;
                if rest.is_empty() {
                    Some(rest)
                } else {
                    rest.strip_prefix('/')
                }
            }
            Prefix::Wildcard { .. } => self.covers_host(host).then_some(path),
        }
    }

    fn covers_host(&self, host: &str) -> bool {
        match self {
            Prefix::Exact {
                host: prefix_host, ..
            } => prefix_host == host,
            Prefix::Wildcard { domain, port } => {
                let (name, host_port) = split_port(host);
                host_port == port.as_deref()
                    && name
                        .strip_suffix(domain.as_str())
                        .and_then(|labels| labels.strip_suffix('.'))
                        .is_some_and(|labels| !labels.is_empty())
            }
        }
    }
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

fn join(base: &str, rest: &str) -> String {
    if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}/{rest}")
    }
}

/// Checks a `location` (of an entry or a mirror) and returns it normalized: host lower-cased,
/// no trailing `/`.
fn parse_location(
    index: usize,
    field: &'static str,
    value: &str,
) -> Result<String, RegistriesConfError> {
    let invalid = |reason: &'static str| RegistriesConfError::InvalidValue {
        index,
        field,
        value: value.to_owned(),
        reason,
    };
    if has_scheme(value) {
        return Err(invalid("URL schemes are not supported"));
    }
    if value.contains('*') {
        return Err(invalid("a location cannot be a wildcard"));
    }
    let trimmed = value.trim_end_matches('/');
    if has_tag_or_digest(trimmed) {
        return Err(RegistriesConfError::TagOrDigest {
            index,
            field,
            value: value.to_owned(),
        });
    }
    let (host, path) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    if host.is_empty() {
        return Err(invalid("it has no host"));
    }
    Ok(join(&host.to_ascii_lowercase(), path))
}

/// Checks a `prefix` and returns it with its rank (the normalized prefix's length).
fn parse_prefix(index: usize, value: &str) -> Result<(Prefix, usize), RegistriesConfError> {
    let invalid = |reason: &'static str| RegistriesConfError::InvalidValue {
        index,
        field: "prefix",
        value: value.to_owned(),
        reason,
    };
    if has_scheme(value) {
        return Err(invalid("URL schemes are not supported"));
    }
    let trimmed = value.trim_end_matches('/');
    if let Some(domain_and_port) = trimmed.strip_prefix("*.") {
        if domain_and_port.is_empty()
            || domain_and_port.contains(['*', '/', '@'])
            || domain_and_port.starts_with('.')
        {
            return Err(invalid(
                "a wildcard prefix must be *.domain[:port], with nothing after the host",
            ));
        }
        let lowered = domain_and_port.to_ascii_lowercase();
        let (domain, port) = split_port(&lowered);
        if domain.contains(':') {
            return Err(invalid("the port of a wildcard prefix must be a number"));
        }
        let prefix = Prefix::Wildcard {
            domain: domain.to_owned(),
            port: port.map(str::to_owned),
        };
        return Ok((prefix, trimmed.len()));
    }
    if trimmed.contains('*') {
        return Err(invalid("a wildcard is only allowed as a leading *."));
    }
    if has_tag_or_digest(trimmed) {
        return Err(RegistriesConfError::TagOrDigest {
            index,
            field: "prefix",
            value: value.to_owned(),
        });
    }
    let (host, path) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    if host.is_empty() {
        return Err(invalid("it has no host"));
    }
    let prefix = Prefix::Exact {
        host: host.to_ascii_lowercase(),
        path: path.trim_matches('/').to_owned(),
    };
    Ok((prefix, trimmed.len()))
}

fn has_scheme(value: &str) -> bool {
    value.contains("://")
}

/// A `:` after the first `/` can only start a tag (before it, it starts a port), and `@` can
/// only start a digest.
fn has_tag_or_digest(value: &str) -> bool {
    value.contains('@')
        || value
            .split_once('/')
            .is_some_and(|(_, path)| path.contains(':'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn conf(text: &str) -> RegistriesConf {
        RegistriesConf::parse(text).unwrap()
    }

    fn source(repository: &str, insecure: bool, mirror: bool) -> PullSource {
        PullSource {
            repository: repository.to_owned(),
            insecure,
            mirror,
        }
    }

    fn repositories(plan: &PullPlan) -> Vec<&str> {
        match plan {
            PullPlan::Blocked => Vec::new(),
            PullPlan::Sources(sources) => sources.iter().map(|s| s.repository.as_str()).collect(),
        }
    }

    #[test]
    fn no_match_pulls_the_reference_itself() {
        let c = conf("[[registry]]\nlocation = \"quay.io\"\ninsecure = true\n");
        assert_eq!(
            c.pull_sources("docker.io/library/busybox", false),
            PullPlan::Sources(vec![source("docker.io/library/busybox", false, false)])
        );
        assert_eq!(
            RegistriesConf::default().pull_sources("quay.io/a/b", true),
            PullPlan::Sources(vec![source("quay.io/a/b", false, false)])
        );
    }

    #[test]
    fn longest_prefix_on_component_boundaries() {
        let c = conf(
            r#"
            [[registry]]
            prefix = "example.com"
            location = "host.internal"

            [[registry]]
            prefix = "example.com/foo/bar"
            location = "bar.internal/x"

            [[registry]]
            prefix = "example.com/foo"
            location = "foo.internal"
            "#,
        );
        assert_eq!(
            repositories(&c.pull_sources("example.com/foo/bar/app", false)),
            ["bar.internal/x/app"]
        );
        assert_eq!(
            repositories(&c.pull_sources("example.com/foo/bar", false)),
            ["bar.internal/x"]
        );
        assert_eq!(
            repositories(&c.pull_sources("example.com/foo/barista", false)),
            ["foo.internal/barista"]
        );
        assert_eq!(
            repositories(&c.pull_sources("example.com/foobar/app", false)),
            ["host.internal/foobar/app"]
        );
        // A port is part of the host.
        assert_eq!(
            repositories(&c.pull_sources("example.com:5000/foo/app", false)),
            ["example.com:5000/foo/app"]
        );
    }

    #[test]
    fn equal_prefixes_first_wins() {
        let c = conf(
            r#"
            [[registry]]
            prefix = "example.com"
            location = "first.internal"
            [[registry]]
            prefix = "example.com/"
            location = "second.internal"
            "#,
        );
        assert_eq!(
            repositories(&c.pull_sources("example.com/a", false)),
            ["first.internal/a"]
        );
    }

    #[test]
    fn location_rewrite() {
        let c = conf(
            r#"
            [[registry]]
            prefix = "example.com/foo"
            location = "internal:5000/bar"
            insecure = true
            "#,
        );
        assert_eq!(
            c.pull_sources("example.com/foo/app", false),
            PullPlan::Sources(vec![source("internal:5000/bar/app", true, false)])
        );
        assert_eq!(
            c.pull_sources("example.com/foo/team/app", true),
            PullPlan::Sources(vec![source("internal:5000/bar/team/app", true, false)])
        );
    }

    #[test]
    fn prefix_and_location_default_to_each_other() {
        let c = conf(
            r#"
            [[registry]]
            location = "only-location.example.com/ns"
            blocked = true
            [[registry]]
            prefix = "only-prefix.example.com"
            insecure = true
            "#,
        );
        assert_eq!(
            c.pull_sources("only-location.example.com/ns/app", false),
            PullPlan::Blocked
        );
        assert_eq!(
            c.pull_sources("only-prefix.example.com/app", false),
            PullPlan::Sources(vec![source("only-prefix.example.com/app", true, false)])
        );
    }

    #[test]
    fn mirrors_come_first_in_order() {
        let c = conf(
            r#"
            [[registry]]
            prefix = "example.com/foo"
            location = "internal.example.net/bar"

            [[registry.mirror]]
            location = "mirror-0.local/mirror-for-foo"

            [[registry.mirror]]
            location = "mirror-1.local/mirrors/foo"
            insecure = true
            "#,
        );
        assert_eq!(
            c.pull_sources("example.com/foo/image", false),
            PullPlan::Sources(vec![
                source("mirror-0.local/mirror-for-foo/image", false, true),
                source("mirror-1.local/mirrors/foo/image", true, true),
                source("internal.example.net/bar/image", false, false),
            ])
        );
    }

    #[test]
    fn mirror_by_digest_only_skips_mirrors_for_tags() {
        let c = conf(
            r#"
            [[registry]]
            location = "quay.io"
            mirror-by-digest-only = true
            [[registry.mirror]]
            location = "mirror.local/quay"
            "#,
        );
        assert_eq!(
            repositories(&c.pull_sources("quay.io/a/b", false)),
            ["quay.io/a/b"]
        );
        assert_eq!(
            repositories(&c.pull_sources("quay.io/a/b", true)),
            ["mirror.local/quay/a/b", "quay.io/a/b"]
        );
    }

    #[test]
    fn pull_from_mirror_per_mirror() {
        let c = conf(
            r#"
            [[registry]]
            location = "quay.io"
            [[registry.mirror]]
            location = "digests.local"
            pull-from-mirror = "digest-only"
            [[registry.mirror]]
            location = "tags.local"
            pull-from-mirror = "tag-only"
            [[registry.mirror]]
            location = "all.local"
            pull-from-mirror = "all"
            [[registry.mirror]]
            location = "default.local"
            "#,
        );
        assert_eq!(
            repositories(&c.pull_sources("quay.io/a/b", false)),
            [
                "tags.local/a/b",
                "all.local/a/b",
                "default.local/a/b",
                "quay.io/a/b"
            ]
        );
        assert_eq!(
            repositories(&c.pull_sources("quay.io/a/b", true)),
            [
                "digests.local/a/b",
                "all.local/a/b",
                "default.local/a/b",
                "quay.io/a/b"
            ]
        );
    }

    #[test]
    fn blocked() {
        let c = conf(
            r#"
            [[registry]]
            prefix = "blocked.example.com"
            location = "blocked.example.com"
            blocked = true

            [[registry]]
            prefix = "blocked.example.com/allowed"
            location = "blocked.example.com/allowed"
            "#,
        );
        assert_eq!(
            c.pull_sources("blocked.example.com/a/b", false),
            PullPlan::Blocked
        );
        assert_eq!(
            c.pull_sources("blocked.example.com/a/b", true),
            PullPlan::Blocked
        );
        assert_eq!(
            repositories(&c.pull_sources("blocked.example.com/allowed/b", false)),
            ["blocked.example.com/allowed/b"]
        );
    }

    #[test]
    fn blocked_with_mirrors_uses_only_mirrors() {
        let c = conf(
            r#"
            [[registry]]
            location = "source.example.com"
            blocked = true
            [[registry.mirror]]
            location = "mirror.local/source"
            pull-from-mirror = "digest-only"
            "#,
        );
        assert_eq!(
            c.pull_sources("source.example.com/app", true),
            PullPlan::Sources(vec![source("mirror.local/source/app", false, true)])
        );
        // No mirror may serve a tag pull, and the source must not be contacted.
        assert_eq!(
            c.pull_sources("source.example.com/app", false),
            PullPlan::Blocked
        );
    }

    #[test]
    fn wildcard_prefix() {
        let c = conf(
            r#"
            [[registry]]
            prefix = "*.example.com"
            insecure = true
            [[registry.mirror]]
            location = "mirror.local/wild"

            [[registry]]
            prefix = "*.ports.example.com:5000"
            location = "ported.internal"
            "#,
        );
        assert_eq!(
            c.pull_sources("a.example.com/ns/app", false),
            PullPlan::Sources(vec![
                source("mirror.local/wild/ns/app", false, true),
                source("a.example.com/ns/app", true, false),
            ])
        );
        assert_eq!(
            repositories(&c.pull_sources("b.a.Example.COM/app", false)),
            ["mirror.local/wild/app", "b.a.example.com/app"]
        );
        // The bare domain and other ports are not covered.
        assert_eq!(
            repositories(&c.pull_sources("example.com/app", false)),
            ["example.com/app"]
        );
        assert_eq!(
            repositories(&c.pull_sources("a.example.com:5000/app", false)),
            ["a.example.com:5000/app"]
        );
        assert_eq!(
            repositories(&c.pull_sources("x.ports.example.com:5000/app", false)),
            ["ported.internal/app"]
        );
    }

    #[test]
    fn exact_prefix_longer_than_wildcard_wins() {
        let c = conf(
            r#"
            [[registry]]
            prefix = "*.example.com"
            blocked = true
            [[registry]]
            prefix = "registry.example.com"
            location = "registry.example.com"
            "#,
        );
        assert_eq!(
            repositories(&c.pull_sources("registry.example.com/app", false)),
            ["registry.example.com/app"]
        );
        assert_eq!(
            c.pull_sources("other.example.com/app", false),
            PullPlan::Blocked
        );
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let c = conf(
            r#"
            unqualified-search-registries = ["registry.fedoraproject.org", "docker.io"]
            short-name-mode = "enforcing"
            credential-helpers = ["containers-auth.json"]

            [aliases]
            "fedora" = "registry.fedoraproject.org/fedora"

            [[registry]]
            location = "quay.io"
            some-future-key = { nested = [1, 2] }
            [[registry.mirror]]
            location = "mirror.local"
            another-future-key = true
            "#,
        );
        assert_eq!(
            repositories(&c.pull_sources("quay.io/a", false)),
            ["mirror.local/a", "quay.io/a"]
        );
    }

    #[test]
    fn empty_file_is_empty_config() {
        let c = conf("");
        assert_eq!(
            repositories(&c.pull_sources("quay.io/a", false)),
            ["quay.io/a"]
        );
    }

    #[test]
    fn syntax_error_keeps_toml_message() {
        let text = "[[registry]\nlocation = \"quay.io\"\n";
        let err = RegistriesConf::parse(text).unwrap_err();
        let RegistriesConfError::Toml(message) = &err else {
            panic!("unexpected error {err:?}");
        };
        let toml_message = toml::from_str::<RawConf>(text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!message.is_empty());
        assert_eq!(message.as_str(), toml_message.trim_end());
        assert_eq!(
            err.to_string(),
            format!("invalid registries.conf: {message}")
        );
    }

    #[test]
    fn wrong_type_is_a_toml_error() {
        let err =
            RegistriesConf::parse("[[registry]]\nlocation = \"quay.io\"\ninsecure = \"yes\"\n")
                .unwrap_err();
        assert!(matches!(err, RegistriesConfError::Toml(_)), "{err:?}");
    }

    #[test]
    fn registry_without_prefix_or_location() {
        let err = RegistriesConf::parse("[[registry]]\ninsecure = true\n").unwrap_err();
        assert!(
            matches!(err, RegistriesConfError::MissingLocation { index: 1 }),
            "{err:?}"
        );
    }

    #[test]
    fn prefix_with_tag_or_digest() {
        for prefix in [
            "example.com/foo:latest",
            "example.com:5000/foo:v1",
            "example.com/foo@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            let text = format!("[[registry]]\nprefix = \"{prefix}\"\nlocation = \"internal\"\n");
            let err = RegistriesConf::parse(&text).unwrap_err();
            assert!(
                matches!(err, RegistriesConfError::TagOrDigest { field: "prefix", .. }),
                "{prefix}: {err:?}"
            );
        }
        // A port alone is not a tag.
        conf("[[registry]]\nprefix = \"example.com:5000/foo\"\nlocation = \"internal\"\n");
    }

    #[test]
    fn invalid_pull_from_mirror() {
        let err = RegistriesConf::parse(
            "[[registry]]\nlocation = \"quay.io\"\n[[registry.mirror]]\nlocation = \"m\"\npull-from-mirror = \"sometimes\"\n",
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                RegistriesConfError::InvalidPullFromMirror { index: 1, mirror: 1, ref value }
                    if value == "sometimes"
            ),
            "{err:?}"
        );
    }

    #[test]
    fn conflicting_mirror_policies() {
        let err = RegistriesConf::parse(
            "[[registry]]\nlocation = \"quay.io\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m\"\npull-from-mirror = \"tag-only\"\n",
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                RegistriesConfError::ConflictingMirrorPolicy {
                    index: 1,
                    mirror: 1
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn mirror_without_location() {
        let err = RegistriesConf::parse(
            "[[registry]]\nlocation = \"quay.io\"\n[[registry.mirror]]\ninsecure = true\n",
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                RegistriesConfError::MissingMirrorLocation {
                    index: 1,
                    mirror: 1
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn invalid_values() {
        for text in [
            "[[registry]]\nlocation = \"https://quay.io\"\n",
            "[[registry]]\nprefix = \"example.*.com\"\nlocation = \"x\"\n",
            "[[registry]]\nprefix = \"*.example.com/foo\"\n",
            "[[registry]]\nprefix = \"/foo\"\nlocation = \"x\"\n",
        ] {
            let err = RegistriesConf::parse(text).unwrap_err();
            assert!(
                matches!(err, RegistriesConfError::InvalidValue { .. }),
                "{text}: {err:?}"
            );
        }
    }

    #[test]
    fn version1_format_is_refused() {
        let err = RegistriesConf::parse(
            "[registries.search]\nregistries = ['quay.io']\n[registries.block]\nregistries = ['bad.io']\n",
        )
        .unwrap_err();
        assert!(matches!(err, RegistriesConfError::Version1), "{err:?}");
    }

    #[test]
    fn insecure_registry_lookup() {
        let c = conf(
            r#"
            [[registry]]
            prefix = "plain.example.com"
            location = "plain.example.com"
            insecure = true

            [[registry]]
            prefix = "pathed.example.com/team"
            location = "pathed.example.com/team"
            insecure = true

            [[registry]]
            prefix = "*.wild.example.com"
            insecure = true

            [[registry]]
            location = "secure.example.com"

            [[registry]]
            location = "ported.example.com:5000"
            insecure = true
            "#,
        );
        assert!(c.is_insecure_registry("plain.example.com"));
        assert!(c.is_insecure_registry("PLAIN.example.com"));
        assert!(c.is_insecure_registry("pathed.example.com"));
        assert!(c.is_insecure_registry("a.wild.example.com"));
        assert!(c.is_insecure_registry("ported.example.com:5000"));
        assert!(!c.is_insecure_registry("ported.example.com"));
        assert!(!c.is_insecure_registry("wild.example.com"));
        assert!(!c.is_insecure_registry("secure.example.com"));
        assert!(!c.is_insecure_registry("unknown.example.com"));
    }
}
