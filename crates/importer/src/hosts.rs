//! Host names as registries and credentials files write them.

/// Splits `host[:port]`; the colons of a bracketed IPv6 address are not a port separator.
pub(crate) fn split_port(host: &str) -> (&str, Option<&str>) {
    match host.rsplit_once(':') {
        Some((name, port))
            if !name.is_empty()
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (name.ends_with(']') || !name.contains(':')) =>
        {
            (name, Some(port))
        }
        _ => (host, None),
    }
}
