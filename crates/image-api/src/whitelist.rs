//! The allowed-registries whitelist (spec §5.5, `imagePolicyConfig.allowedRegistriesForImport`):
//! which registries image stream references may point at.

use apimachinery::field::{FieldError, FieldPath};

use crate::reference::DockerImageReference;
use crate::ImageStream;

/// The annotation that marks every reference of a stream as insecure.
pub const INSECURE_REPOSITORY_ANNOTATION: &str = "openshift.io/image.insecureRepository";

/// One allowed registry: a host pattern (`*` and `?` wildcards) and an optional port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedRegistry {
    pub domain: String,
    pub insecure: bool,
}

impl AllowedRegistry {
    /// Parses `host[:port]`, or `http://host[:port]` for an insecure entry.
    pub fn parse(text: &str) -> Self {
        match text.strip_prefix("http://") {
            Some(d) => AllowedRegistry {
                domain: d.to_string(),
                insecure: true,
            },
            None => AllowedRegistry {
                domain: text.trim_start_matches("https://").to_string(),
                insecure: false,
            },
        }
    }

    fn host_and_ports(&self) -> (&str, Vec<&str>) {
        match self.domain.rsplit_once(':') {
            Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, vec![p]),
            _ if self.insecure => (&self.domain, vec!["80", "443"]),
            _ => (&self.domain, vec!["443"]),
        }
    }

    /// How the entry is printed in errors: `host:port` with the default port filled in.
    fn display(&self) -> String {
        let (host, ports) = self.host_and_ports();
        format!("{host}:{}", ports[0])
    }
}

/// `*` matches any run of characters, `?` one character.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while ti < t.len() {
        // A `*` in the pattern is always the wildcard, even facing a literal `*`.
        if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

const DOCKER_HUB_HOSTS: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// The configured whitelist. `None` entries means "not configured": everything is allowed.
#[derive(Clone, Debug, Default)]
pub struct RegistryWhitelist {
    entries: Option<Vec<AllowedRegistry>>,
    /// The integrated registry is always allowed.
    internal: String,
}

impl RegistryWhitelist {
    pub fn new(entries: Option<Vec<AllowedRegistry>>, internal: &str) -> Self {
        RegistryWhitelist {
            entries,
            internal: internal.to_string(),
        }
    }

    pub fn is_configured(&self) -> bool {
        self.entries.is_some()
    }

    /// Checks a pull spec; `insecure` transport allows both the HTTP and HTTPS ports.
    pub fn check_reference(&self, reference: &str, insecure: bool) -> Result<(), String> {
        let Some(entries) = &self.entries else {
            return Ok(());
        };
        let Ok(r) = DockerImageReference::parse(reference) else {
            // Unparseable references are reported by validation itself.
            return Ok(());
        };
        let registry = if r.registry.is_empty() {
            "docker.io".to_string()
        } else {
            r.registry.clone()
        };
        let (host, port) = match registry.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => {
                (h.to_string(), Some(p.to_string()))
            }
            _ => (registry.clone(), None),
        };
        if !self.internal.is_empty() && (registry == self.internal || host == self.internal) {
            return Ok(());
        }
        let candidates: Vec<String> = match &port {
            Some(p) => vec![p.clone()],
            None if insecure => vec!["443".into(), "80".into()],
            None => vec!["443".into()],
        };
        let hub = DOCKER_HUB_HOSTS.contains(&host.as_str());
        let allowed = entries.iter().any(|e| {
            let (pattern, ports) = e.host_and_ports();
            let host_ok =
                wildcard_match(pattern, &host) || (hub && DOCKER_HUB_HOSTS.contains(&pattern));
            host_ok && candidates.iter().any(|c| ports.contains(&c.as_str()))
        });
        if allowed {
            return Ok(());
        }
        let shown = format!("{host}:{}", candidates[0]);
        if entries.is_empty() {
            return Err(format!("registry {shown:?} not allowed by empty whitelist"));
        }
        let listed: Vec<String> = entries
            .iter()
            .take(5)
            .map(|e| format!("{:?}", e.display()))
            .collect();
        let mut text = listed.join(", ");
        if entries.len() > 5 {
            text.push_str(&format!(", and {} more ...", entries.len() - 5));
        }
        Err(format!(
            "registry {shown:?} not allowed by whitelist: {text}"
        ))
    }
}

/// Every reference of `new` the whitelist forbids, as Forbidden errors at its field (spec
/// §5.5). References the previous version of the stream (`old`) already had are exempt, so
/// users can keep or remove them.
pub fn stream_whitelist_errors(
    wl: &RegistryWhitelist,
    new: &ImageStream,
    old: Option<&ImageStream>,
) -> Vec<FieldError> {
    if !wl.is_configured() {
        return Vec::new();
    }
    let stream_insecure = new
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(INSECURE_REPOSITORY_ANNOTATION))
        .is_some_and(|v| v == "true");
    let old_refs = old.map(stream_references).unwrap_or_default();
    let mut errs = Vec::new();
    for (path, reference, insecure) in checked_references(new) {
        if reference.is_empty() || old_refs.contains(&reference) {
            continue;
        }
        if let Err(e) = wl.check_reference(reference, insecure || stream_insecure) {
            errs.push(FieldError::forbidden(&path, e));
        }
    }
    errs
}

/// Every reference a stream holds: spec tags, status events and its repository.
fn stream_references(stream: &ImageStream) -> Vec<&str> {
    let spec = stream
        .spec
        .tags
        .iter()
        .filter_map(|t| t.from.as_ref()?.name.as_deref());
    let status = stream
        .status
        .tags
        .iter()
        .flat_map(|l| l.items.iter().flatten())
        .map(|e| e.docker_image_reference.as_str());
    spec.chain(status)
        .chain(std::iter::once(
            stream.spec.docker_image_repository.as_str(),
        ))
        .collect()
}

/// The references the whitelist checks, each with its field and whether its tag is insecure:
/// the repository, DockerImage spec tags, then every status event.
fn checked_references(stream: &ImageStream) -> Vec<(FieldPath, &str, bool)> {
    let mut out = vec![(
        FieldPath::new("spec").child("dockerImageRepository"),
        stream.spec.docker_image_repository.as_str(),
        false,
    )];
    for t in &stream.spec.tags {
        let Some(from) = t
            .from
            .as_ref()
            .filter(|f| f.kind.as_deref() == Some("DockerImage"))
        else {
            continue;
        };
        let path = FieldPath::new("spec")
            .child("tags")
            .key(&t.name)
            .child("from")
            .child("name");
        out.push((
            path,
            from.name.as_deref().unwrap_or(""),
            t.import_policy.insecure,
        ));
    }
    for list in &stream.status.tags {
        let insecure = stream
            .spec_tag(&list.tag)
            .is_some_and(|t| t.import_policy.insecure);
        for (i, item) in list.items.iter().flatten().enumerate() {
            let path = FieldPath::new("status")
                .child("tags")
                .key(&list.tag)
                .child("items")
                .index(i)
                .child("dockerImageReference");
            out.push((path, item.docker_image_reference.as_str(), insecure));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wl(entries: &[&str]) -> RegistryWhitelist {
        RegistryWhitelist::new(
            Some(entries.iter().map(|e| AllowedRegistry::parse(e)).collect()),
            "image-registry.svc:5000",
        )
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.example.com", "a.example.com"));
        assert!(wildcard_match("quay.?o", "quay.io"));
        assert!(!wildcard_match("*.example.com", "example.org"));
        assert!(wildcard_match("*", "anything"));
    }

    #[test]
    fn allows_and_denies() {
        let w = wl(&["quay.io", "*.corp.example:5000", "http://insecure.local"]);
        assert!(w.check_reference("quay.io/a/b:1", false).is_ok());
        assert!(w
            .check_reference("reg.corp.example:5000/a/b", false)
            .is_ok());
        assert!(w.check_reference("reg.corp.example/a/b", false).is_err());
        assert!(w.check_reference("insecure.local/a", true).is_ok());
        assert!(w
            .check_reference("image-registry.svc:5000/ns/is", false)
            .is_ok());
        assert_eq!(
            w.check_reference("docker.io/library/nginx", false).expect_err("hub"),
            "registry \"docker.io:443\" not allowed by whitelist: \"quay.io:443\", \"*.corp.example:5000\", \"insecure.local:80\""
        );
        assert!(wl(&["docker.io"]).check_reference("nginx", false).is_ok());
        assert!(wl(&["docker.io"])
            .check_reference("registry-1.docker.io/library/nginx", false)
            .is_ok());
        assert_eq!(
            wl(&[])
                .check_reference("quay.io/a", false)
                .expect_err("empty"),
            "registry \"quay.io:443\" not allowed by empty whitelist"
        );
        let many = wl(&["a.io", "b.io", "c.io", "d.io", "e.io", "f.io", "g.io"]);
        assert!(many
            .check_reference("z.io/x", false)
            .expect_err("many")
            .ends_with("\"e.io:443\", and 2 more ..."));
        assert!(RegistryWhitelist::default()
            .check_reference("anything/x", false)
            .is_ok());
    }
}
