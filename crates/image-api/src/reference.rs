//! Container image references (spec §2.2): the docker distribution grammar, split the way
//! library-go's `reference.Parse` splits them into registry, namespace, name, tag and ID.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("repository name must have at least one component")]
    NameEmpty,
    #[error("repository name must be lowercase")]
    NameContainsUppercase,
    #[error("invalid reference format")]
    InvalidFormat,
    #[error("repository name must not be more than 255 characters")]
    NameTooLong,
    #[error("unsupported digest algorithm")]
    UnsupportedDigest,
    #[error("invalid checksum digest length")]
    InvalidDigestLength,
}

/// A parsed reference. Fields are empty when absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DockerImageReference {
    pub registry: String,
    pub namespace: String,
    pub name: String,
    pub tag: String,
    /// A digest (`sha256:...`).
    pub id: String,
}

const NAME_TOTAL_LENGTH_MAX: usize = 255;

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `alpha-numeric (separator alpha-numeric)*` with separators `.`, `_`, `__` or `-`+.
fn is_path_component(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let alnum_run = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && is_lower_alnum(b[*i]) {
            *i += 1;
        }
        *i > start
    };
    if !alnum_run(&mut i) {
        return false;
    }
    while i < b.len() {
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if b.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
        if !alnum_run(&mut i) {
            return false;
        }
    }
    true
}

fn is_domain_component(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        }
        _ => false,
    }
}

fn is_domain(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty() && host.split('.').all(is_domain_component)
}

fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b[1..].iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

/// `algorithm:hex` with the digest grammar; the algorithm check comes later.
fn is_digest_syntax(s: &str) -> bool {
    let Some((algo, hex)) = s.split_once(':') else {
        return false;
    };
    let algo_ok = algo.split(['-', '_', '+', '.']).all(|c| {
        let b = c.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
    });
    algo_ok && hex.len() >= 32 && hex.bytes().all(|c| c.is_ascii_hexdigit())
}

fn check_digest(d: &str) -> Result<(), ReferenceError> {
    let (algo, hex) = d.split_once(':').ok_or(ReferenceError::InvalidFormat)?;
    let want = match algo {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(ReferenceError::UnsupportedDigest),
    };
    if hex.len() != want {
        return Err(ReferenceError::InvalidDigestLength);
    }
    Ok(())
}

struct Matched<'a> {
    name: &'a str,
    tag: &'a str,
    digest: &'a str,
}

/// The anchored `ReferenceRegexp` match.
fn match_reference(s: &str) -> Option<Matched<'_>> {
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => {
            if !is_digest_syntax(d) {
                return None;
            }
            (r, d)
        }
        None => (s, ""),
    };
    let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], &rest[last_slash + i + 1..]),
        None => (rest, ""),
    };
    if !tag.is_empty() && !is_tag(tag) || rest.ends_with(':') {
        return None;
    }
    let components: Vec<&str> = name.split('/').collect();
    let all_paths = components.iter().all(|c| is_path_component(c));
    let domain_then_paths = components.len() >= 2
        && is_domain(components[0])
        && components[1..].iter().all(|c| is_path_component(c));
    (all_paths || domain_then_paths).then_some(Matched { name, tag, digest })
}

impl DockerImageReference {
    /// library-go's `reference.Parse`.
    pub fn parse(spec: &str) -> Result<Self, ReferenceError> {
        let Some(m) = match_reference(spec) else {
            if spec.is_empty() {
                return Err(ReferenceError::NameEmpty);
            }
            if match_reference(&spec.to_lowercase()).is_some() {
                return Err(ReferenceError::NameContainsUppercase);
            }
            return Err(ReferenceError::InvalidFormat);
        };
        if m.name.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::NameTooLong);
        }
        if !m.digest.is_empty() {
            check_digest(m.digest)?;
        }
        let mut r = DockerImageReference {
            tag: m.tag.to_string(),
            id: m.digest.to_string(),
            ..Default::default()
        };
        let name = m.name;
        match name.split_once('/') {
            None => {
                if name.contains('.') || name.starts_with("localhost") {
                    r.registry = name.to_string();
                } else {
                    r.name = name.to_string();
                }
            }
            Some((first, rest)) => {
                let rest = if first.contains(['.', ':']) || first == "localhost" {
                    r.registry = first.to_string();
                    rest
                } else {
                    name
                };
                match rest.split_once('/') {
                    Some((ns, n)) => {
                        r.namespace = ns.to_string();
                        r.name = n.to_string();
                    }
                    None => r.name = rest.to_string(),
                }
            }
        }
        Ok(r)
    }

    /// The repository without tag or ID: `[registry/][namespace/]name`.
    pub fn repository(&self) -> String {
        let mut out = String::new();
        for part in [&self.registry, &self.namespace] {
            if !part.is_empty() {
                out.push_str(part);
                out.push('/');
            }
        }
        out.push_str(&self.name);
        out
    }

    /// `Exact()`: only the fields that are set; a digest ID wins over the tag.
    pub fn exact(&self) -> String {
        let mut out = self.repository();
        if !self.id.is_empty() && self.id.contains(':') {
            out.push('@');
            out.push_str(&self.id);
        } else if !self.tag.is_empty() {
            out.push(':');
            out.push_str(&self.tag);
        } else if !self.id.is_empty() {
            out.push(':');
            out.push_str(&self.id);
        }
        out
    }
}

impl fmt::Display for DockerImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.exact())
    }
}

/// Whether `id` names the image `image` (spec §2.1 `DigestOrImageMatch`): a prefix of the
/// digest's hex part or of the whole string.
pub fn digest_or_image_matches(image: &str, id: &str) -> bool {
    if let Some((_, hex)) = image.split_once(':') {
        if hex.starts_with(id) {
            return true;
        }
    }
    image.starts_with(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn p(s: &str) -> DockerImageReference {
        DockerImageReference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn splits_registry_namespace_name() {
        let r = p("nginx");
        assert_eq!(
            (r.registry.as_str(), r.namespace.as_str(), r.name.as_str()),
            ("", "", "nginx")
        );
        let r = p("library/nginx:1.25");
        assert_eq!(
            (r.namespace.as_str(), r.name.as_str(), r.tag.as_str()),
            ("library", "nginx", "1.25")
        );
        let r = p("quay.io/ns/app/sub");
        assert_eq!(
            (r.registry.as_str(), r.namespace.as_str(), r.name.as_str()),
            ("quay.io", "ns", "app/sub")
        );
        let r = p(&format!("localhost:5000/a/b:t@{D}"));
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.tag, "t");
        assert_eq!(r.id, D);
        assert_eq!(r.exact(), format!("localhost:5000/a/b@{D}"));
        let r = p("registry.example.com");
        assert_eq!(r.registry, "registry.example.com");
        assert_eq!(r.name, "");
        let r = p("localhost/x");
        assert_eq!(r.registry, "localhost");
        assert_eq!(p("a/b/c").namespace, "a");
    }

    #[test]
    fn errors_match_library_go() {
        let e = |s: &str| DockerImageReference::parse(s).expect_err(s).to_string();
        assert_eq!(e(""), "repository name must have at least one component");
        assert_eq!(e("Nginx"), "repository name must be lowercase");
        assert_eq!(e("a b"), "invalid reference format");
        assert_eq!(e("a:"), "invalid reference format");
        assert_eq!(e("a//b"), "invalid reference format");
        assert_eq!(e("a/b@sha256:x"), "invalid reference format");
        assert_eq!(
            e(&format!("a@md5:{}", "0".repeat(32))),
            "unsupported digest algorithm"
        );
        assert_eq!(
            e(&format!("a@sha256:{}", "0".repeat(32))),
            "invalid checksum digest length"
        );
        assert_eq!(
            e(&"a".repeat(256)),
            "repository name must not be more than 255 characters"
        );
        assert_eq!(e("-a"), "invalid reference format");
    }

    #[test]
    fn path_components_follow_the_separators() {
        for ok in ["a", "a.b", "a_b", "a__b", "a---b", "a1-b2.c3"] {
            assert!(is_path_component(ok), "{ok}");
        }
        for bad in ["", "a.", ".a", "a___b", "a..b", "A", "a_-b"] {
            assert!(!is_path_component(bad), "{bad}");
        }
    }

    #[test]
    fn digest_prefix_matching() {
        assert!(digest_or_image_matches(D, "0123"));
        assert!(digest_or_image_matches(D, "sha256:0123"));
        assert!(!digest_or_image_matches(D, "1234"));
        assert!(digest_or_image_matches("image1", "ima"));
    }
}
