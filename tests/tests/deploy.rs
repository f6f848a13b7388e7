//! The cluster manifests in deploy/ (spec §8.1, §8.6): `gen-certs.sh` and `kubectl kustomize`
//! run on a copy of the directory, and the rendered objects are checked: what kube-apiserver
//! needs to aggregate the server, the RBAC the server and its users get, how the pods run.
//! No cluster is involved: `kubectl apply --dry-run=client` runs against the fake
//! kube-apiserver, whose discovery lists the kinds rendered.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::Value;

use blackbox::fake_kube::FakeKube;

const NAMESPACE: &str = "image-apiserver";
const SERVICE_DNS_NAMES: [&str; 2] = [
    "image-apiserver.image-apiserver.svc",
    "image-apiserver.image-apiserver.svc.cluster.local",
];
const SECRET_PREFIX: &str = "image-apiserver-serving-cert-";
const CLUSTER_SCOPED: [&str; 4] = [
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "APIService",
];
const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// The rendered manifests and the certificates gen-certs.sh wrote for them.
struct Rendered {
    /// What `kubectl kustomize` printed.
    yaml: String,
    objects: Vec<Value>,
    ca_crt: String,
    tls_crt: String,
}

impl Rendered {
    /// The one object of `kind` named `name`.
    fn one(&self, kind: &str, name: &str) -> &Value {
        let found: Vec<&Value> = self
            .objects
            .iter()
            .filter(|o| kind_of(o) == kind && name_of(o) == name)
            .collect();
        assert_eq!(found.len(), 1, "{kind} {name}: {found:#?}");
        found[0]
    }

    /// The generated Secret, whose name ends in a hash of its content.
    fn serving_secret(&self) -> &Value {
        let found: Vec<&Value> = self
            .objects
            .iter()
            .filter(|o| kind_of(o) == "Secret" && name_of(o).starts_with(SECRET_PREFIX))
            .collect();
        assert_eq!(found.len(), 1, "{found:#?}");
        found[0]
    }

    fn deployment(&self) -> &Value {
        self.one("Deployment", "image-apiserver")
    }

    fn server_container(&self) -> &Value {
        container(self.deployment(), "image-apiserver")
    }
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Copies deploy/ without certs/: certificates a developer generated there must not stand in
/// for the ones the script is expected to create.
fn copy_deploy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read deploy/") {
        let entry = entry.expect("a deploy/ entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            if entry.file_name() != "certs" {
                copy_deploy(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), target).expect("copy a file");
        }
    }
}

fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .expect("start the command")
}

/// Runs and expects success; returns stdout.
fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn gen_certs(certs: &Path) -> Output {
    output(
        Command::new("bash")
            .arg(deploy_dir().join("gen-certs.sh"))
            .arg(certs),
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// kustomize separates its documents with `---` lines.
fn parse_documents(yaml: &str) -> Vec<Value> {
    yaml.split("\n---\n")
        .filter(|doc| !doc.trim().is_empty())
        .map(|doc| serde_norway::from_str(doc).unwrap_or_else(|e| panic!("{e}: {doc}")))
        .collect()
}

fn render() -> Rendered {
    let dir = tempfile::tempdir().expect("temp dir");
    let deploy = dir.path().join("deploy");
    copy_deploy(&deploy_dir(), &deploy);
    let certs = deploy.join("certs");
    run(Command::new("bash")
        .arg(deploy.join("gen-certs.sh"))
        .arg(&certs));
    let yaml = run(Command::new("kubectl").arg("kustomize").arg(deploy));
    Rendered {
        objects: parse_documents(&yaml),
        yaml,
        ca_crt: read(&certs.join("ca.crt")),
        tls_crt: read(&certs.join("tls.crt")),
    }
}

/// Rendered once for all the tests of this file.
fn rendered() -> &'static Rendered {
    static RENDERED: OnceLock<Rendered> = OnceLock::new();
    RENDERED.get_or_init(render)
}

fn field<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in {v:#}"))
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    field(v, pointer)
        .as_str()
        .unwrap_or_else(|| panic!("{pointer} is not a string in {v:#}"))
}

fn items<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    field(v, pointer)
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("{pointer} is not a list in {v:#}"))
}

fn strings<'a>(v: &'a Value, pointer: &str) -> Vec<&'a str> {
    items(v, pointer).iter().filter_map(Value::as_str).collect()
}

fn kind_of(o: &Value) -> &str {
    text(o, "/kind")
}

fn name_of(o: &Value) -> &str {
    text(o, "/metadata/name")
}

fn namespace_of(o: &Value) -> Option<&str> {
    o.pointer("/metadata/namespace").and_then(Value::as_str)
}

fn container<'a>(workload: &'a Value, name: &str) -> &'a Value {
    items(workload, "/spec/template/spec/containers")
        .iter()
        .find(|c| text(c, "/name") == name)
        .unwrap_or_else(|| panic!("no container {name} in {workload:#}"))
}

fn env_value<'a>(container: &'a Value, name: &str) -> &'a Value {
    items(container, "/env")
        .iter()
        .find(|e| text(e, "/name") == name)
        .unwrap_or_else(|| panic!("no env {name} in {container:#}"))
}

/// The value of `--flag=value` among the container's arguments.
fn flag<'a>(container: &'a Value, name: &str) -> &'a str {
    let prefix = format!("--{name}=");
    strings(container, "/args")
        .into_iter()
        .find_map(|arg| arg.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no --{name} in {container:#}"))
}

/// The path, scheme and container port number a probe checks.
fn probe<'a>(container: &'a Value, which: &str) -> (&'a str, &'a str, u64) {
    let get = field(container, &format!("/{which}/httpGet"));
    let port = match field(get, "/port") {
        Value::String(named) => items(container, "/ports")
            .iter()
            .find(|p| text(p, "/name") == named.as_str())
            .and_then(|p| p.pointer("/containerPort"))
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("no port named {named} in {container:#}")),
        number => number.as_u64().expect("a port number"),
    };
    (text(get, "/path"), text(get, "/scheme"), port)
}

/// Where the container mounts the pod volume `volume`.
fn mount_path<'a>(container: &'a Value, volume: &str) -> &'a str {
    items(container, "/volumeMounts")
        .iter()
        .find(|m| text(m, "/name") == volume)
        .map(|m| text(m, "/mountPath"))
        .unwrap_or_else(|| panic!("volume {volume} is not mounted in {container:#}"))
}

fn volume<'a>(workload: &'a Value, name: &str) -> &'a Value {
    items(workload, "/spec/template/spec/volumes")
        .iter()
        .find(|v| text(v, "/name") == name)
        .unwrap_or_else(|| panic!("no volume {name} in {workload:#}"))
}

fn lists(rule: &Value, key: &str, wanted: &str) -> bool {
    rule.get(key)
        .and_then(Value::as_array)
        .is_some_and(|values| {
            values
                .iter()
                .any(|v| matches!(v.as_str(), Some(s) if s == wanted || s == "*"))
        })
}

/// Whether a rule of `role` grants `verb` on `resource`, for objects of any name.
fn grants(role: &Value, group: &str, resource: &str, verb: &str) -> bool {
    items(role, "/rules").iter().any(|rule| {
        lists(rule, "apiGroups", group)
            && lists(rule, "resources", resource)
            && lists(rule, "verbs", verb)
            && rule.get("resourceNames").is_none()
    })
}

/// Whether a rule of `role` grants `verb` on the object `name` of `resource`.
fn grants_on(role: &Value, group: &str, resource: &str, verb: &str, name: &str) -> bool {
    items(role, "/rules").iter().any(|rule| {
        lists(rule, "apiGroups", group)
            && lists(rule, "resources", resource)
            && lists(rule, "verbs", verb)
            && (rule.get("resourceNames").is_none() || lists(rule, "resourceNames", name))
    })
}

fn assert_binds_server_account(binding: &Value, role_kind: &str, role_name: &str) {
    assert_eq!(
        text(binding, "/roleRef/apiGroup"),
        "rbac.authorization.k8s.io"
    );
    assert_eq!(text(binding, "/roleRef/kind"), role_kind, "{binding:#}");
    assert_eq!(text(binding, "/roleRef/name"), role_name, "{binding:#}");
    let subjects = items(binding, "/subjects");
    assert_eq!(subjects.len(), 1, "{binding:#}");
    assert_eq!(text(&subjects[0], "/kind"), "ServiceAccount");
    assert_eq!(text(&subjects[0], "/name"), "image-apiserver");
    assert_eq!(text(&subjects[0], "/namespace"), NAMESPACE);
}

fn decode_base64(encoded: &str) -> String {
    // kustomize wraps long values; the API server's decoder skips the line breaks too.
    let joined: String = encoded.split_whitespace().collect();
    let bytes = STANDARD.decode(joined).expect("base64");
    String::from_utf8(bytes).expect("UTF-8 PEM")
}

/// What `kubectl apply --dry-run=client` prints for an object it would create:
/// `deployment.apps/image-apiserver created (dry run)`, `secret/<name> created (dry run)`.
fn created_in_dry_run(o: &Value) -> String {
    let kind = kind_of(o).to_ascii_lowercase();
    let kind_and_group = match text(o, "/apiVersion").split_once('/') {
        Some((group, _version)) => format!("{kind}.{group}"),
        None => kind,
    };
    format!("{kind_and_group}/{} created (dry run)", name_of(o))
}

fn certificate(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("a PEM certificate")
}

#[test]
fn renders_exactly_the_expected_objects() {
    let mut found: Vec<(String, String)> = rendered()
        .objects
        .iter()
        .map(|o| {
            // The Secret's name ends in a hash of its content.
            let name = if kind_of(o) == "Secret" && name_of(o).starts_with(SECRET_PREFIX) {
                format!("{SECRET_PREFIX}*")
            } else {
                name_of(o).to_string()
            };
            (kind_of(o).to_string(), name)
        })
        .collect();
    found.sort();
    let mut expected: Vec<(String, String)> = [
        ("APIService", "v1.image.openshift.io"),
        ("ClusterRole", "image-apiserver"),
        ("ClusterRole", "image-apiserver-aggregate-to-admin"),
        ("ClusterRole", "image-apiserver-aggregate-to-edit"),
        ("ClusterRole", "image-apiserver-aggregate-to-view"),
        ("ClusterRoleBinding", "image-apiserver"),
        (
            "ClusterRoleBinding",
            "image-apiserver:system:auth-delegator",
        ),
        ("Deployment", "image-apiserver"),
        ("Namespace", "image-apiserver"),
        ("NetworkPolicy", "etcd"),
        ("PodDisruptionBudget", "image-apiserver"),
        ("Role", "image-apiserver-leader-election"),
        ("RoleBinding", "image-apiserver-leader-election"),
        (
            "RoleBinding",
            "image-apiserver:extension-apiserver-authentication-reader",
        ),
        ("Secret", "image-apiserver-serving-cert-*"),
        ("Service", "etcd"),
        ("Service", "image-apiserver"),
        ("ServiceAccount", "etcd"),
        ("ServiceAccount", "image-apiserver"),
        ("StatefulSet", "etcd"),
    ]
    .iter()
    .map(|(kind, name)| (kind.to_string(), name.to_string()))
    .collect();
    expected.sort();
    assert_eq!(found, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_dry_run_client_accepts_the_manifests() {
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = fake.write_kubeconfig(dir.path());
    let manifests = dir.path().join("rendered.yaml");
    // kubectl caches discovery under HOME: a private one keeps other runs' caches out.
    let home = dir.path().join("home");
    let (r, out) = tokio::task::spawn_blocking(move || {
        let r = rendered();
        std::fs::write(&manifests, &r.yaml).expect("write the rendered manifests");
        std::fs::create_dir_all(&home).expect("create HOME");
        let out = output(
            Command::new("kubectl")
                .env("HOME", &home)
                .env("KUBECONFIG", &kubeconfig)
                .env_remove("KUBERNETES_SERVICE_HOST")
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["apply", "--dry-run=client", "--validate=false", "-f"])
                .arg(&manifests),
        );
        (r, out)
    })
    .await
    .expect("the kubectl task");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl apply failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Vec<&str> = stdout.lines().collect();
    let expected: Vec<String> = r.objects.iter().map(created_in_dry_run).collect();
    assert_eq!(printed, expected);
    for line in [
        "deployment.apps/image-apiserver created (dry run)",
        "apiservice.apiregistration.k8s.io/v1.image.openshift.io created (dry run)",
    ] {
        assert!(printed.contains(&line), "{line}: {stdout}");
    }
    // kubectl looked each object up and, finding none, would have created it.
    assert!(fake.calls("/apis/apps/v1/namespaces/image-apiserver/deployments/") > 0);
    let writes: Vec<String> = fake
        .requests("/")
        .iter()
        .filter(|request| request.method != "GET")
        .map(|request| format!("{} {}", request.method, request.path))
        .collect();
    assert!(writes.is_empty(), "a client dry run wrote: {writes:?}");
    assert!(fake.get("Namespace", "", NAMESPACE).is_none());
}

#[test]
fn namespaced_objects_live_in_the_namespace_and_all_carry_the_name_label() {
    let r = rendered();
    for o in &r.objects {
        let (kind, name) = (kind_of(o), name_of(o));
        let expected = if CLUSTER_SCOPED.contains(&kind) {
            None
        } else if kind == "RoleBinding"
            && name.ends_with("extension-apiserver-authentication-reader")
        {
            // The Role it binds exists only in kube-system.
            Some("kube-system")
        } else {
            Some(NAMESPACE)
        };
        assert_eq!(namespace_of(o), expected, "{kind} {name}");
        assert_eq!(
            text(o, "/metadata/labels/app.kubernetes.io~1name"),
            "image-apiserver",
            "{kind} {name}"
        );
    }
    let namespace = r.one("Namespace", NAMESPACE);
    assert_eq!(
        text(
            namespace,
            "/metadata/labels/pod-security.kubernetes.io~1enforce"
        ),
        "restricted"
    );
}

#[test]
fn server_account_may_delegate_authentication_and_authorization() {
    let r = rendered();
    assert_eq!(
        namespace_of(r.one("ServiceAccount", "image-apiserver")),
        Some(NAMESPACE)
    );
    assert_binds_server_account(
        r.one(
            "ClusterRoleBinding",
            "image-apiserver:system:auth-delegator",
        ),
        "ClusterRole",
        "system:auth-delegator",
    );
    let reader = r.one(
        "RoleBinding",
        "image-apiserver:extension-apiserver-authentication-reader",
    );
    assert_eq!(namespace_of(reader), Some("kube-system"));
    assert_binds_server_account(reader, "Role", "extension-apiserver-authentication-reader");
    assert_eq!(
        text(r.deployment(), "/spec/template/spec/serviceAccountName"),
        "image-apiserver"
    );
}

#[test]
fn server_account_reads_namespaces_limitranges_and_secrets() {
    let r = rendered();
    let role = r.one("ClusterRole", "image-apiserver");
    for resource in ["namespaces", "limitranges", "secrets"] {
        for verb in ["get", "list", "watch"] {
            assert!(grants(role, "", resource, verb), "{verb} {resource}");
        }
        for verb in WRITE_VERBS {
            assert!(!grants(role, "", resource, verb), "{verb} {resource}");
        }
    }
    assert_binds_server_account(
        r.one("ClusterRoleBinding", "image-apiserver"),
        "ClusterRole",
        "image-apiserver",
    );
}

#[test]
fn server_account_may_hold_the_controllers_lease() {
    let r = rendered();
    let lease = flag(r.server_container(), "leader-elect-resource-name");
    assert_eq!(lease, "image-apiserver-controllers");
    assert_eq!(
        flag(r.server_container(), "leader-elect-resource-namespace"),
        "$(POD_NAMESPACE)"
    );
    let role = r.one("Role", "image-apiserver-leader-election");
    assert!(grants(role, "coordination.k8s.io", "leases", "create"));
    for verb in ["get", "update"] {
        assert!(
            grants_on(role, "coordination.k8s.io", "leases", verb, lease),
            "{verb}"
        );
        assert!(
            !grants_on(role, "coordination.k8s.io", "leases", verb, "another"),
            "{verb}"
        );
    }
    assert_binds_server_account(
        r.one("RoleBinding", "image-apiserver-leader-election"),
        "Role",
        "image-apiserver-leader-election",
    );
}

#[test]
fn user_roles_aggregate_into_admin_edit_and_view() {
    let r = rendered();
    let group = "image.openshift.io";
    for aggregate in ["admin", "edit", "view"] {
        let role = r.one(
            "ClusterRole",
            &format!("image-apiserver-aggregate-to-{aggregate}"),
        );
        let label = format!("/metadata/labels/rbac.authorization.k8s.io~1aggregate-to-{aggregate}");
        assert_eq!(text(role, &label), "true", "{aggregate}");
        for resource in [
            "imagestreams",
            "imagestreamtags",
            "imagetags",
            "imagestreamimages",
        ] {
            for verb in ["get", "list", "watch"] {
                assert!(
                    grants(role, group, resource, verb),
                    "{aggregate}: {verb} {resource}"
                );
            }
        }
        assert!(
            grants(role, group, "imagestreams/layers", "get"),
            "{aggregate}: pull"
        );
        // Cluster-scoped: left to cluster-admin.
        for resource in ["images", "imagesignatures"] {
            assert!(
                !grants(role, group, resource, "get"),
                "{aggregate}: {resource}"
            );
        }
    }
    for aggregate in ["admin", "edit"] {
        let role = r.one(
            "ClusterRole",
            &format!("image-apiserver-aggregate-to-{aggregate}"),
        );
        for resource in ["imagestreams", "imagestreamtags", "imagetags"] {
            for verb in WRITE_VERBS {
                assert!(
                    grants(role, group, resource, verb),
                    "{aggregate}: {verb} {resource}"
                );
            }
        }
        assert!(
            grants(role, group, "imagestreamimports", "create"),
            "{aggregate}"
        );
        assert!(
            grants(role, group, "imagestreammappings", "create"),
            "{aggregate}"
        );
        assert!(
            grants(role, group, "imagestreams/layers", "update"),
            "{aggregate}: push"
        );
        assert!(
            grants(role, group, "imagestreams/secrets", "get"),
            "{aggregate}"
        );
    }
    let view = r.one("ClusterRole", "image-apiserver-aggregate-to-view");
    for rule in items(view, "/rules") {
        for verb in WRITE_VERBS {
            assert!(!lists(rule, "verbs", verb), "view may {verb}: {rule:#}");
        }
    }
    assert!(
        !grants(view, group, "imagestreams/secrets", "get"),
        "view reads secrets"
    );
}

#[test]
fn deployment_runs_two_hardened_replicas() {
    let r = rendered();
    let deployment = r.deployment();
    assert_eq!(field(deployment, "/spec/replicas"), 2);
    let pod = field(deployment, "/spec/template/spec");
    assert_eq!(field(pod, "/securityContext/runAsNonRoot"), true);
    assert_eq!(
        text(pod, "/securityContext/seccompProfile/type"),
        "RuntimeDefault"
    );
    let server = r.server_container();
    assert_eq!(text(server, "/image"), "image-apiserver:latest");
    assert_eq!(
        field(server, "/securityContext/readOnlyRootFilesystem"),
        true
    );
    assert_eq!(
        field(server, "/securityContext/allowPrivilegeEscalation"),
        false
    );
    assert_eq!(
        strings(server, "/securityContext/capabilities/drop"),
        ["ALL"]
    );
    assert_eq!(flag(server, "secure-port"), "8443");
    assert_eq!(flag(server, "bind-address"), "0.0.0.0");
    assert_eq!(flag(server, "tls-min-version"), "VersionTLS12");
    assert_eq!(probe(server, "livenessProbe"), ("/livez", "HTTPS", 8443));
    assert_eq!(probe(server, "startupProbe"), ("/livez", "HTTPS", 8443));
    assert_eq!(probe(server, "readinessProbe"), ("/readyz", "HTTPS", 8443));
    assert_eq!(text(server, "/resources/requests/cpu"), "100m");
    assert_eq!(text(server, "/resources/requests/memory"), "128Mi");
    assert_eq!(text(server, "/resources/limits/memory"), "512Mi");
    let data = mount_path(server, "data");
    assert_eq!(flag(server, "data-dir"), data);
    assert!(
        volume(deployment, "data").get("emptyDir").is_some(),
        "{deployment:#}"
    );
}

#[test]
fn disruption_budget_and_service_select_the_server_pods() {
    let r = rendered();
    let pod_labels = field(r.deployment(), "/spec/template/metadata/labels");
    let selects_pods = |selector: &Value| {
        let selector = selector.as_object().expect("a label map");
        assert!(!selector.is_empty());
        selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
    };
    let budget = r.one("PodDisruptionBudget", "image-apiserver");
    assert_eq!(field(budget, "/spec/minAvailable"), 1);
    assert!(selects_pods(field(budget, "/spec/selector/matchLabels")));
    let service = r.one("Service", "image-apiserver");
    assert!(selects_pods(field(service, "/spec/selector")));
    let ports = items(service, "/spec/ports");
    assert_eq!(ports.len(), 1, "{service:#}");
    assert_eq!(field(&ports[0], "/port"), 443);
    assert_eq!(field(&ports[0], "/targetPort"), 8443);
    // etcd's pods are not the server's.
    let etcd_labels = field(
        r.one("StatefulSet", "etcd"),
        "/spec/template/metadata/labels",
    );
    assert!(!selects_pods(etcd_labels));
}

#[test]
fn server_serves_the_certificate_of_the_generated_secret() {
    let r = rendered();
    let secret = r.serving_secret();
    assert_eq!(text(secret, "/type"), "kubernetes.io/tls");
    assert_eq!(decode_base64(text(secret, "/data/tls.crt")), r.tls_crt);
    assert!(decode_base64(text(secret, "/data/tls.key")).contains("PRIVATE KEY"));
    let cert_volume = volume(r.deployment(), "serving-cert");
    assert_eq!(text(cert_volume, "/secret/secretName"), name_of(secret));
    let server = r.server_container();
    let dir = mount_path(server, "serving-cert");
    assert_eq!(flag(server, "tls-cert-file"), format!("{dir}/tls.crt"));
    assert_eq!(
        flag(server, "tls-private-key-file"),
        format!("{dir}/tls.key")
    );
}

#[test]
fn apiservice_sends_image_openshift_io_to_the_service() {
    let r = rendered();
    let api = r.one("APIService", "v1.image.openshift.io");
    assert_eq!(text(api, "/spec/group"), "image.openshift.io");
    assert_eq!(text(api, "/spec/version"), "v1");
    assert_eq!(text(api, "/spec/service/namespace"), NAMESPACE);
    assert_eq!(text(api, "/spec/service/name"), "image-apiserver");
    assert_eq!(field(api, "/spec/service/port"), 443);
    assert_eq!(field(api, "/spec/groupPriorityMinimum"), 9900);
    assert_eq!(field(api, "/spec/versionPriority"), 15);
    assert!(
        api.pointer("/spec/insecureSkipTLSVerify").is_none(),
        "{api:#}"
    );
    assert_eq!(decode_base64(text(api, "/spec/caBundle")), r.ca_crt);
    // The Service the APIService names.
    let service = r.one("Service", "image-apiserver");
    assert_eq!(namespace_of(service), Some(NAMESPACE));
}

#[test]
fn ca_bundle_verifies_the_serving_certificate_for_the_service_names_only() {
    let r = rendered();
    let api = r.one("APIService", "v1.image.openshift.io");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(certificate(&decode_base64(text(api, "/spec/caBundle"))))
        .expect("the CA as a trust anchor");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .expect("verifier");
    let serving = certificate(&decode_base64(text(r.serving_secret(), "/data/tls.crt")));
    let verify = |host: &str| {
        let name = ServerName::try_from(host).expect("a DNS name");
        verifier.verify_server_cert(&serving, &[], &name, &[], UnixTime::now())
    };
    for host in SERVICE_DNS_NAMES {
        if let Err(e) = verify(host) {
            panic!("{host}: {e}");
        }
    }
    assert!(verify("image-apiserver.default.svc").is_err());
}

#[test]
fn server_stores_objects_in_the_bundled_etcd() {
    let r = rendered();
    let server = r.server_container();
    assert_eq!(flag(server, "storage-backend"), "etcd");
    assert_eq!(flag(server, "etcd-prefix"), "openshift.io");
    assert_eq!(flag(server, "etcd-servers"), "$(ETCD_SERVERS)");
    let env: Vec<&str> = items(server, "/env")
        .iter()
        .map(|e| text(e, "/name"))
        .collect();
    let position = |name: &str| env.iter().position(|n| *n == name);
    // A variable only expands names defined before it.
    assert!(
        position("POD_NAMESPACE") < position("ETCD_SERVERS"),
        "{env:?}"
    );
    assert_eq!(
        text(
            env_value(server, "POD_NAMESPACE"),
            "/valueFrom/fieldRef/fieldPath"
        ),
        "metadata.namespace"
    );
    assert_eq!(
        text(env_value(server, "ETCD_SERVERS"), "/value"),
        "http://etcd.$(POD_NAMESPACE).svc:2379"
    );
    let service = r.one("Service", "etcd");
    assert_eq!(field(service, "/spec/ports/0/port"), 2379);
    let etcd = r.one("StatefulSet", "etcd");
    assert_eq!(field(etcd, "/spec/replicas"), 1);
    assert_eq!(text(etcd, "/spec/serviceName"), "etcd");
    assert_eq!(
        field(etcd, "/spec/template/spec/securityContext/runAsNonRoot"),
        true
    );
    let claims = items(etcd, "/spec/volumeClaimTemplates");
    assert_eq!(claims.len(), 1, "{etcd:#}");
    let member = container(etcd, "etcd");
    assert_eq!(mount_path(member, name_of(&claims[0])), "/var/lib/etcd");
    assert_eq!(
        field(member, "/securityContext/readOnlyRootFilesystem"),
        true
    );
    // Only the server's pods reach the client port.
    let policy = r.one("NetworkPolicy", "etcd");
    let client_rule = items(policy, "/spec/ingress")
        .iter()
        .find(|rule| rule.pointer("/ports/0/port").and_then(Value::as_str) == Some("client"))
        .unwrap_or_else(|| panic!("no rule for the client port in {policy:#}"));
    assert_eq!(
        text(
            client_rule,
            "/from/0/podSelector/matchLabels/app.kubernetes.io~1component"
        ),
        "server"
    );
}

#[test]
fn gen_certs_keeps_what_exists_and_protects_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = dir.path().join("certs");
    let first = gen_certs(&certs);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let files = [
        "ca.crt",
        "ca.key",
        "tls.crt",
        "tls.key",
        "apiservice-cabundle.yaml",
    ];
    let snapshot = || files.map(|f| read(&certs.join(f)));
    let before = snapshot();
    for key in ["ca.key", "tls.key"] {
        let mode = std::fs::metadata(certs.join(key))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    let patch: Value = serde_norway::from_str(&before[4]).expect("patch YAML");
    assert_eq!(decode_base64(text(&patch, "/spec/caBundle")), before[0]);

    let again = gen_certs(&certs);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(snapshot(), before, "a second run changed the certificates");

    // Renewal: the serving certificate is issued again by the same CA.
    std::fs::remove_file(certs.join("tls.crt")).expect("remove tls.crt");
    std::fs::remove_file(certs.join("tls.key")).expect("remove tls.key");
    let renewed = gen_certs(&certs);
    assert!(
        renewed.status.success(),
        "{}",
        String::from_utf8_lossy(&renewed.stderr)
    );
    let after = snapshot();
    assert_eq!(after[0], before[0]);
    assert_ne!(after[2], before[2]);

    // Half a pair is refused rather than silently replaced.
    std::fs::remove_file(certs.join("ca.key")).expect("remove ca.key");
    let refused = gen_certs(&certs);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("only one of"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(read(&certs.join("ca.crt")), before[0]);
}
