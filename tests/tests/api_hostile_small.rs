//! The smaller findings of issue 13, each answered as kube-apiserver answers it: a future
//! resourceVersion read exactly, resourceVersions beyond int64, paths that do not decode to
//! UTF-8, apply patches without apiVersion or kind, the store file's mode and the lifetime of
//! the generated serving certificate.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use blackbox::api::{stream, streams, Client, Resp};
use blackbox::{both_backends, Server};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use serde_json::json;

const APPLY: &str = "application/apply-patch+yaml";

/// One past int64: Go's `strconv.ParseUint` takes it, a revision cannot hold it.
const BEYOND_INT64: &str = "9223372036854775808";

async fn make(c: &Client, ns: &str, name: &str) {
    let r = c
        .post(&streams(ns), &json!({"metadata": {"name": name}}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

/// The list's resourceVersion: the store's revision when the list was read.
async fn list_revision(c: &Client, ns: &str) -> i64 {
    let list = c.get(&streams(ns)).await.json();
    list["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .expect("list resourceVersion")
}

/// Checks a 504 "Too large resource version" for `requested`, and returns the current
/// revision it reports.
fn assert_too_large(r: &Resp, requested: i64) -> i64 {
    assert_eq!(r.status, 504, "{}", r.text());
    let s = r.json();
    assert_eq!(s["kind"], "Status");
    assert_eq!(s["reason"], "Timeout");
    let prefix = format!("Timeout: Too large resource version: {requested}, current: ");
    let message = r.message();
    let current = message
        .strip_prefix(&prefix)
        .and_then(|c| c.parse::<i64>().ok())
        .unwrap_or_else(|| panic!("unexpected message {message:?}"));
    assert_eq!(
        s["details"]["causes"],
        json!([{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}])
    );
    assert_eq!(s["details"]["retryAfterSeconds"], 1);
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    current
}

async fn future_exact_reads_are_too_large(server: &Server) {
    let c = server.client();
    make(&c, "ns1", "a").await;
    let listed = list_revision(&c, "ns1").await;
    let future = listed + 1000;
    for query in [
        format!("resourceVersion={future}&resourceVersionMatch=Exact"),
        // An RV with a limit and no match is an exact read too (spec §4.1).
        format!("resourceVersion={future}&limit=5"),
    ] {
        let started = Instant::now();
        let r = c.get(&format!("{}?{query}", streams("ns1"))).await;
        let current = assert_too_large(&r, future);
        assert!(
            (listed..future).contains(&current),
            "current {current} outside {listed}..{future}"
        );
        // An exact revision the store has not reached is refused at once, not waited for.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{query} took {:?}",
            started.elapsed()
        );
    }
    // A GET takes no resourceVersionMatch: the cache waits for the revision, then gives up.
    let r = c
        .get(&format!(
            "{}?resourceVersion={future}&resourceVersionMatch=Exact",
            stream("ns1", "a")
        ))
        .await;
    assert_too_large(&r, future);
}

async fn resource_versions_beyond_int64_are_bad_requests(server: &Server) {
    let c = server.client();
    make(&c, "ns1", "a").await;
    for rv in [BEYOND_INT64, "18446744073709551615", "18446744073709551616"] {
        let want = format!(
            "invalid resource version: resourceVersion: Invalid value: \"{rv}\": strconv.ParseUint: parsing \"{rv}\": value out of range"
        );
        for path in [
            format!("{}?resourceVersion={rv}", streams("ns1")),
            format!(
                "{}?resourceVersion={rv}&resourceVersionMatch=Exact",
                streams("ns1")
            ),
            format!("{}?resourceVersion={rv}&limit=1", streams("ns1")),
            format!("{}?resourceVersion={rv}", stream("ns1", "a")),
            format!("{}?watch=1&resourceVersion={rv}", streams("ns1")),
        ] {
            let r = c.get(&path).await;
            assert_eq!(r.status, 400, "{path}: {}", r.text());
            assert_eq!(r.json()["reason"], "BadRequest", "{path}");
            assert_eq!(r.message(), want, "{path}");
        }
    }
    // A sign is not a digit, as Go's ParseUint has it.
    let r = c
        .get(&format!("{}?resourceVersion=%2B5", streams("ns1")))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.message().ends_with("invalid syntax"), "{}", r.message());
}

fn assert_route_not_found(r: &Resp, path: &str) {
    assert_eq!(r.status, 404, "{path}: {}", r.text());
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json"),
        "{path}"
    );
    let s = r.json();
    assert_eq!(s["kind"], "Status", "{path}");
    assert_eq!(s["reason"], "NotFound", "{path}");
    assert_eq!(
        s["message"], "the server could not find the requested resource",
        "{path}"
    );
}

async fn undecodable_paths_get_a_status(server: &Server) {
    let c = server.client();
    make(&c, "ns", "a").await;
    for path in [
        "/apis/image.openshift.io/v1/namespaces/%ff/imagestreams".to_string(),
        format!("{}/%ff%fe", streams("ns")),
        format!("{}/%C3", streams("ns")),
        "/apis/%ff".to_string(),
        "/healthz/%ff".to_string(),
        "/openapi/v3/apis/%ff".to_string(),
    ] {
        assert_route_not_found(&c.get(&path).await, &path);
    }
    let r = c
        .patch(
            &format!("{}/%ff?fieldManager=m", streams("ns")),
            APPLY,
            "{}",
        )
        .await;
    assert_route_not_found(&r, "apply to %ff");
    // Escapes that decode to UTF-8 still name what they spell.
    let r = c
        .get("/apis/image.openshift.io/v1/namespaces/n%73/imagestreams/%61")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["metadata"]["name"], "a");
}

async fn apply_patches_must_name_the_type(server: &Server) {
    let c = server.client();
    let path = format!("{}?fieldManager=m", stream("ns", "applied"));
    for (body, message) in [
        ("{}", "invalid object type: /, Kind="),
        (
            "apiVersion: image.openshift.io/v1\nmetadata:\n  name: applied\n",
            "invalid object type: image.openshift.io/v1, Kind=",
        ),
        (
            "kind: ImageStream\nmetadata:\n  name: applied\n",
            "invalid object type: /, Kind=ImageStream",
        ),
        (
            "apiVersion: v1\nkind: ImageStream\nmetadata:\n  name: applied\n",
            "invalid object type: /v1, Kind=ImageStream",
        ),
    ] {
        let r = c.patch(&path, APPLY, body).await;
        assert_eq!(r.status, 400, "{body:?}: {}", r.text());
        assert_eq!(r.json()["reason"], "BadRequest", "{body:?}");
        assert_eq!(r.message(), message, "{body:?}");
    }
    assert_eq!(c.get(&stream("ns", "applied")).await.status, 404);
    let full = "apiVersion: image.openshift.io/v1\nkind: ImageStream\nmetadata:\n  name: applied\n";
    let r = c.patch(&path, APPLY, full).await;
    assert_eq!(r.status, 201, "{}", r.text());
    // An existing object is no different.
    let r = c.patch(&path, APPLY, "{}").await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.message(), "invalid object type: /, Kind=");
}

both_backends!(
    [],
    future_exact_reads_are_too_large,
    resource_versions_beyond_int64_are_bad_requests,
    undecodable_paths_get_a_status,
    apply_patches_must_name_the_type,
);

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_and_everything_secret_in_it_are_owner_only() {
    let server = blackbox::start_embedded(&[]).await;
    let dir = server.data_dir();
    assert_eq!(mode(&dir.join("store.redb")), 0o600, "store.redb");
    assert_eq!(mode(&dir.join("apiserver.key")), 0o600, "apiserver.key");
    assert_eq!(mode(&dir.join("tokens.csv")), 0o600, "tokens.csv");
    assert_eq!(
        mode(dir) & 0o077,
        0,
        "the data directory is the owner's alone"
    );
}

/// (not before, not after) of the first certificate in the PEM file, in Unix seconds.
fn validity(path: &Path) -> (i64, i64) {
    let pem = std::fs::read_to_string(path).expect("certificate file");
    let der = blackbox::pki::pem_certificates(&pem).remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).expect("certificate");
    let v = cert.validity();
    (v.not_before.timestamp(), v.not_after.timestamp())
}

const DAY: i64 = 24 * 60 * 60;
const YEAR: i64 = 365 * DAY;

/// Both generated certificates are valid for a year from an hour before `started`.
fn assert_valid_for_a_year(dir: &Path, started: i64) {
    for file in ["ca.crt", "apiserver.crt"] {
        let (not_before, not_after) = validity(&dir.join(file));
        assert_eq!(not_after - not_before, YEAR, "{file}");
        assert!(
            (started - 3600 - 60..=started - 3600 + 120).contains(&not_before),
            "{file} starts at {not_before}, the server started at {started}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_serving_certificate_is_valid_for_a_year() {
    let started = jiff::Timestamp::now().as_second();
    let server = blackbox::start_embedded(&[]).await;
    assert_valid_for_a_year(server.data_dir(), started);
}

/// A UTC date `days` from today, as rcgen takes it.
fn utc_date_in(days: i64) -> (i32, u8, u8) {
    let at = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(24 * days))
        .expect("a date in range");
    let date = at.to_zoned(jiff::tz::TimeZone::UTC).date();
    (
        i32::from(date.year()),
        u8::try_from(date.month()).expect("month"),
        u8::try_from(date.day()).expect("day"),
    )
}

/// A CA and a serving certificate for 127.0.0.1 that expire in `days`, written where the
/// server keeps its own; returns the CA's PEM.
fn write_expiring_pair(dir: &Path, days: i64) -> String {
    let (y, m, d) = utc_date_in(days);
    let not_after = rcgen::date_time_ymd(y, m, d);
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.distinguished_name.push(DnType::CommonName, "old-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.not_after = not_after;
    let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("serving key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("serving parameters");
    params.subject_alt_names = vec![
        SanType::IpAddress("127.0.0.1".parse().expect("IP")),
        SanType::DnsName("localhost".try_into().expect("DNS name")),
    ];
    params.not_after = not_after;
    let cert = params
        .signed_by(&key, &issuer)
        .expect("serving certificate");
    std::fs::create_dir_all(dir).expect("data directory");
    std::fs::write(dir.join("ca.crt"), &ca_pem).expect("ca.crt");
    std::fs::write(dir.join("apiserver.crt"), cert.pem()).expect("apiserver.crt");
    std::fs::write(dir.join("apiserver.key"), key.serialize_pem()).expect("apiserver.key");
    ca_pem
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_near_expiry_is_replaced_on_start() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    let old_ca = write_expiring_pair(&dir, 10);
    let started = jiff::Timestamp::now().as_second();
    let server = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || Server::start_with(&dir, &[]))
            .await
            .expect("start server")
    };
    let new_ca = std::fs::read_to_string(dir.join("ca.crt")).expect("ca.crt");
    assert_ne!(
        new_ca, old_ca,
        "the CA was replaced along with the certificate"
    );
    assert_valid_for_a_year(&dir, started);
    // The kubeconfig written on start carries the new CA, and clients trusting it are served
    // (the harness's readiness check already went through it).
    let kubeconfig = std::fs::read_to_string(server.kubeconfig()).expect("kubeconfig");
    let encoded = base64::engine::general_purpose::STANDARD.encode(&new_ca);
    assert!(kubeconfig.contains(&encoded), "kubeconfig lacks the new CA");
    let r = server.client().get(&streams("ns")).await;
    assert_eq!(r.status, 200, "{}", r.text());
}
