//! The machine's real kubectl against the server, through the admin kubeconfig the server
//! writes (spec §12). Each test asserts on what kubectl printed or on the server's state.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use blackbox::api::stream;
use blackbox::both_backends;
use blackbox::Server;

/// kubectl with the server's kubeconfig and a private HOME (its discovery cache).
struct Kubectl {
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

impl Kubectl {
    fn new(server: &Server) -> Self {
        Kubectl {
            kubeconfig: server.kubeconfig(),
            home: tempfile::tempdir().expect("home"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.env("HOME", self.home.path())
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run kubectl")
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.home.path().join(name);
        std::fs::write(&p, contents).expect("write manifest");
        p
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

const STREAM: &str = "apiVersion: image.openshift.io/v1
kind: ImageStream
metadata:
  name: web
  labels:
    app: web
spec:
  tags:
  - name: latest
    from:
      kind: DockerImage
      name: quay.io/example/web:1.0
    reference: true
  - name: stable
    from:
      kind: ImageStreamTag
      name: latest
";

async fn get_create_and_tables(server: &Server) {
    let k = Kubectl::new(server);
    let out = k.ok(&["get", "imagestreams", "-A"]);
    assert!(out.is_empty(), "{out}");
    let manifest = k.file("is.yaml", STREAM);
    let out = k.ok(&["create", "-f", path_str(&manifest), "-n", "team"]);
    assert_eq!(out.trim(), "imagestream.image.openshift.io/web created");
    let out = k.ok(&["get", "is", "-n", "team"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        vec!["NAME", "IMAGE", "REPOSITORY", "TAGS", "UPDATED"]
    );
    assert!(lines[1].starts_with("web "), "{out}");
    assert!(
        lines[1].contains("latest,stable") || lines[1].contains("stable,latest"),
        "{out}"
    );
    let yaml = k.ok(&["get", "is", "web", "-n", "team", "-o", "yaml"]);
    assert!(yaml.contains("kind: ImageStream"), "{yaml}");
    assert!(
        yaml.contains("dockerImageReference: quay.io/example/web:1.0"),
        "{yaml}"
    );
    let name = k.ok(&[
        "get",
        "imagestream/web",
        "-n",
        "team",
        "-o",
        "jsonpath={.status.tags[1].tag}",
    ]);
    assert_eq!(name, "stable");
    let resources = k.ok(&["api-resources", "--api-group=image.openshift.io"]);
    assert!(
        resources.contains("imagestreams") && resources.contains(" is "),
        "{resources}"
    );
    let explain = k.ok(&["explain", "imagestream.spec.tags"]);
    assert!(
        explain.contains("FIELD: tags <[]TagReference>"),
        "{explain}"
    );
    assert!(explain.contains("referencePolicy"), "{explain}");
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../api/examples/imagestream.yaml"
    );
    assert_eq!(
        k.ok(&["create", "-f", example]).trim(),
        "imagestream.image.openshift.io/example created"
    );
    let raw = k.ok(&["get", "--raw", "/openapi/v3"]);
    assert!(raw.contains("apis/image.openshift.io/v1"), "{raw}");
    let bad = k.run(&["create", "-n", "team", "-f", path_str(&k.file("bad.yaml", "apiVersion: image.openshift.io/v1\nkind: ImageStream\nmetadata:\n  name: bad\nspec:\n  bogus: 1\n"))]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("unknown field \"spec.bogus\""), "{err}");
}

async fn apply_client_and_server_side(server: &Server) {
    let k = Kubectl::new(server);
    let manifest = k.file("is.yaml", STREAM);
    let out = k.ok(&["apply", "-f", path_str(&manifest)]);
    assert_eq!(out.trim(), "imagestream.image.openshift.io/web created");
    let changed = k.file(
        "is2.yaml",
        &STREAM
            .replace("app: web", "app: web2")
            .replace("web:1.0", "web:2.0"),
    );
    let out = k.ok(&["apply", "-f", path_str(&changed)]);
    assert_eq!(out.trim(), "imagestream.image.openshift.io/web configured");
    let out = k.ok(&["apply", "-f", path_str(&changed)]);
    assert_eq!(out.trim(), "imagestream.image.openshift.io/web unchanged");
    let obj = server.client().get(&stream("default", "web")).await.json();
    assert_eq!(obj["metadata"]["labels"]["app"], "web2");
    assert_eq!(
        obj["spec"]["tags"][0]["from"]["name"],
        "quay.io/example/web:2.0"
    );
    assert_eq!(
        obj["status"]["tags"][0]["items"][0]["dockerImageReference"],
        "quay.io/example/web:2.0"
    );
    assert!(
        obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );

    let ssa = k.file("ssa.yaml", "apiVersion: image.openshift.io/v1\nkind: ImageStream\nmetadata:\n  name: ssa\n  labels:\n    owner: kubectl\n");
    let out = k.ok(&["apply", "--server-side", "-f", path_str(&ssa)]);
    assert_eq!(
        out.trim(),
        "imagestream.image.openshift.io/ssa serverside-applied"
    );
    let obj = server.client().get(&stream("default", "ssa")).await.json();
    let managers: Vec<&str> = obj["metadata"]["managedFields"]
        .as_array()
        .expect("mf")
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert_eq!(managers, vec!["kubectl"]);
    let conflicting = k.file("ssa2.yaml", "apiVersion: image.openshift.io/v1\nkind: ImageStream\nmetadata:\n  name: ssa\n  labels:\n    owner: other\n");
    let out = k.run(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "-f",
        path_str(&conflicting),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("conflict"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        path_str(&conflicting),
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "is",
            "ssa",
            "-o",
            "jsonpath={.metadata.labels.owner}"
        ]),
        "other"
    );
}

async fn patch_label_annotate_edit(server: &Server) {
    let k = Kubectl::new(server);
    k.ok(&["create", "-f", path_str(&k.file("is.yaml", STREAM))]);
    let out = k.ok(&["patch", "is", "web", "-p", r#"{"spec":{"tags":[{"name":"extra","from":{"kind":"DockerImage","name":"quay.io/x/y:1"}}]}}"#]);
    assert_eq!(out.trim(), "imagestream.image.openshift.io/web patched");
    let tags = k.ok(&["get", "is", "web", "-o", "jsonpath={.spec.tags[*].name}"]);
    assert_eq!(
        tags, "extra latest stable",
        "a strategic merge patch keeps the other tags"
    );
    k.ok(&[
        "patch",
        "is",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"lookupPolicy":{"local":true}}}"#,
    ]);
    k.ok(&[
        "patch",
        "is",
        "web",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/spec/tags/0"}]"#,
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "is",
            "web",
            "-o",
            "jsonpath={.spec.lookupPolicy.local} {.spec.tags[*].name}"
        ]),
        "true latest stable"
    );
    assert_eq!(
        k.ok(&["label", "is", "web", "tier=front"]).trim(),
        "imagestream.image.openshift.io/web labeled"
    );
    assert_eq!(
        k.ok(&["annotate", "is", "web", "note=hello"]).trim(),
        "imagestream.image.openshift.io/web annotated"
    );
    assert_eq!(
        k.ok(&["get", "is", "-l", "tier=front", "-o", "name"])
            .trim(),
        "imagestream.image.openshift.io/web"
    );
    let editor = k.file(
        "editor.sh",
        "#!/bin/sh\nsed -i 's/note: hello/note: edited/' \"$1\"\n",
    );
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let out = k
        .command(&["edit", "is", "web"])
        .env("KUBE_EDITOR", &editor)
        .output()
        .expect("edit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "imagestream.image.openshift.io/web edited"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "is",
            "web",
            "-o",
            "jsonpath={.metadata.annotations.note}"
        ]),
        "edited"
    );
}

/// Waits until the server has `n` open image stream watches (kubectl has started watching).
async fn wait_for_watches(server: &Server, n: u64) {
    let client = server.client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = client.get("/metrics").await.text();
        // One series per label set (scope, verb): kubectl's watches may differ in scope.
        let open: u64 = metrics
            .lines()
            .filter(|l| {
                l.starts_with("apiserver_longrunning_requests{")
                    && l.contains("resource=\"imagestreams\"")
            })
            .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
            .sum();
        if open >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "kubectl never opened {n} watches"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn watch_wait_and_delete(server: &Server) {
    let k = Kubectl::new(server);
    k.ok(&["create", "-f", path_str(&k.file("is.yaml", STREAM))]);
    let watch = k
        .command(&["get", "is", "-w", "--request-timeout=6s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl get -w");
    wait_for_watches(server, 1).await;
    k.ok(&["label", "is", "web", "seen=yes"]);
    let waiter = k
        .command(&["wait", "--for=delete", "is/web", "--timeout=20s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl wait");
    wait_for_watches(server, 2).await;
    let out = k.ok(&["delete", "is", "web", "--wait"]);
    assert_eq!(out.trim(), "imagestream.image.openshift.io \"web\" deleted");
    let waited = tokio::task::spawn_blocking(move || waiter.wait_with_output())
        .await
        .expect("join")
        .expect("wait output");
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&waited.stdout).trim(),
        "imagestream.image.openshift.io/web condition met"
    );
    let watched = tokio::task::spawn_blocking(move || watch.wait_with_output())
        .await
        .expect("join")
        .expect("watch output");
    let text = String::from_utf8_lossy(&watched.stdout);
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("web ")).collect();
    assert!(
        rows.len() >= 2,
        "get -w printed the initial row and the change: {text}"
    );
    assert_eq!(
        server.client().get(&stream("default", "web")).await.status,
        404
    );
}

both_backends!(
    [],
    get_create_and_tables,
    apply_client_and_server_side,
    patch_label_annotate_edit,
    watch_wait_and_delete
);

const MAPPING: &str = "apiVersion: image.openshift.io/v1
kind: ImageStreamMapping
metadata:
  name: web
tag: pushed
image:
  metadata:
    name: sha256:5555555555555555555555555555555555555555555555555555555555555555
  dockerImageReference: quay.io/example/web@sha256:5555555555555555555555555555555555555555555555555555555555555555
";

async fn tag_model(server: &Server) {
    let k = Kubectl::new(server);
    k.ok(&[
        "create",
        "-n",
        "team",
        "-f",
        path_str(&k.file("is.yaml", STREAM)),
    ]);
    let out = k.ok(&[
        "create",
        "-n",
        "team",
        "-f",
        path_str(&k.file("ism.yaml", MAPPING)),
    ]);
    // The response of a mapping is a Status, which kubectl prints as such (as against
    // openshift-apiserver).
    assert_eq!(out.trim(), "status/<unknown> created");
    let tags = k.ok(&["get", "istag,itag", "-n", "team"]);
    assert!(
        tags.contains("imagestreamtag.image.openshift.io/web:pushed"),
        "{tags}"
    );
    assert!(
        tags.contains("imagetag.image.openshift.io/web:latest"),
        "{tags}"
    );
    assert!(
        tags.contains("imagetag.image.openshift.io/web:pushed"),
        "{tags}"
    );
    let isimage = k.ok(&[
        "get",
        "isimage",
        "web@5555555555",
        "-n",
        "team",
        "-o",
        "jsonpath={.image.metadata.name}",
    ]);
    assert_eq!(
        isimage,
        "sha256:5555555555555555555555555555555555555555555555555555555555555555"
    );
    let all = k.ok(&["get", "all", "-n", "team"]);
    // `all` expands to image streams (the only kind in the category): one table of them.
    assert!(
        all.lines()
            .next()
            .is_some_and(|h| h.starts_with("NAME") && h.contains("TAGS")),
        "{all}"
    );
    assert!(all.lines().any(|l| l.starts_with("web ")), "{all}");
    let explain = k.ok(&["explain", "imagetag.spec"]);
    assert!(explain.contains("KIND:       ImageTag"), "{explain}");
    assert!(explain.contains("referencePolicy"), "{explain}");
    let out = k.ok(&["delete", "istag", "web:pushed", "-n", "team"]);
    assert_eq!(
        out.trim(),
        "imagestreamtag.image.openshift.io \"web:pushed\" deleted"
    );
    let s = server.client().get(&stream("team", "web")).await.json();
    assert!(!s["status"]["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .any(|t| t["tag"] == "pushed"));
}

both_backends!([], tag_model);
