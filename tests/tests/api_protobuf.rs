//! `application/vnd.kubernetes.protobuf` (issue 14, item 7) as openshift-apiserver speaks it,
//! checked against protoc as an independent peer. Request objects are encoded by protoc from
//! text format and response objects decoded by protoc back to text; kube's envelope (`k8s\0`
//! and a runtime.Unknown) is built and taken apart here with prost's generic wire code, and
//! watch frames by hand. The .proto files are the server's own (crates/*/proto); their unit
//! tests pin the field numbers to upstream's.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use blackbox::api::{stream, streams, Client, Resp, IMAGES};
use blackbox::{admin_token, https_client, start_embedded};
use prost::Message;
use reqwest::header::HeaderValue;
use reqwest::Method;
use serde_json::{json, Value};

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
const WATCH_PROTOBUF: &str = "application/vnd.kubernetes.protobuf;stream=watch";
/// What every protobuf body starts with.
const MAGIC: &[u8] = b"k8s\0";
const API_VERSION: &str = "image.openshift.io/v1";
const NS: &str = "proto";
/// What client-go's metadata informers (garbage collector, quota) ask for.
const METADATA_LIST_ACCEPT: &str =
    "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
const METADATA_ACCEPT: &str =
    "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

const IMAGE_STREAM: &str = "github.com.openshift.api.image.v1.ImageStream";
const IMAGE_STREAM_LIST: &str = "github.com.openshift.api.image.v1.ImageStreamList";
const IMAGE: &str = "github.com.openshift.api.image.v1.Image";
const STATUS: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Status";
const WATCH_EVENT: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.WatchEvent";
const METADATA: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.PartialObjectMetadata";
const METADATA_LIST: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.PartialObjectMetadataList";

const DIGEST: &str = "sha256:abababababababababababababababababababababababababababababababab";
const MAPPED_DIGEST: &str =
    "sha256:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd";
const LAYER_1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const LAYER_2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const LAYER_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

// ---------------------------------------------------------------------------------------------
// kube's envelope, with prost's generic wire code

/// runtime.TypeMeta.
#[derive(Clone, PartialEq, prost::Message)]
struct TypeMeta {
    #[prost(string, optional, tag = "1")]
    api_version: Option<String>,
    #[prost(string, optional, tag = "2")]
    kind: Option<String>,
}

/// runtime.Unknown, the envelope.
#[derive(Clone, PartialEq, prost::Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", optional, tag = "2")]
    raw: Option<Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    content_encoding: Option<String>,
    #[prost(string, optional, tag = "4")]
    content_type: Option<String>,
}

/// A body as Go's protobuf serializer writes it: every field of the envelope present.
fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.to_string()),
            kind: Some(kind.to_string()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = MAGIC.to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

/// An envelope's content.
struct Opened {
    api_version: String,
    kind: String,
    raw: Vec<u8>,
}

fn try_open(body: &[u8]) -> Option<(Opened, Unknown)> {
    let unknown = Unknown::decode(body.strip_prefix(MAGIC)?).ok()?;
    let type_meta = unknown.type_meta.clone().unwrap_or_default();
    let opened = Opened {
        api_version: type_meta.api_version.unwrap_or_default(),
        kind: type_meta.kind.unwrap_or_default(),
        raw: unknown.raw.clone().unwrap_or_default(),
    };
    Some((opened, unknown))
}

/// Takes an envelope apart, checking it is written as Go writes it.
fn open(body: &[u8]) -> Opened {
    let Some((opened, unknown)) = try_open(body) else {
        panic!("not kube's protobuf envelope: {body:?}");
    };
    // Go writes the two empty strings rather than leaving them out.
    assert_eq!(unknown.content_encoding.as_deref(), Some(""));
    assert_eq!(unknown.content_type.as_deref(), Some(""));
    opened
}

/// A response's object: checks the envelope's type and decodes raw with protoc.
fn object(resp: &Resp, api_version: &str, kind: &str, message: &str) -> Text {
    assert_eq!(resp.header("content-type").as_deref(), Some(PROTOBUF));
    let opened = open(&resp.body);
    assert_eq!(
        (opened.api_version.as_str(), opened.kind.as_str()),
        (api_version, kind)
    );
    Text::parse(&decode(message, &opened.raw))
}

/// A response body for assertion messages: a protobuf Status as text, anything else as is.
fn describe(resp: &Resp) -> String {
    match try_open(&resp.body) {
        Some((opened, _)) if opened.kind == "Status" => decode(STATUS, &opened.raw),
        Some((opened, _)) => format!("a protobuf {}", opened.kind),
        None => resp.text(),
    }
}

// ---------------------------------------------------------------------------------------------
// protoc, found as hack/lib.sh finds it

/// The .proto file that declares `message`.
fn proto_file(message: &str) -> &'static str {
    match message.rsplit_once('.').map(|(package, _)| package) {
        Some("github.com.openshift.api.image.v1") => {
            "github.com/openshift/api/image/v1/generated.proto"
        }
        Some("k8s.io.apimachinery.pkg.apis.meta.v1") => {
            "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto"
        }
        Some("k8s.io.apimachinery.pkg.runtime") => {
            "k8s.io/apimachinery/pkg/runtime/generated.proto"
        }
        _ => panic!("no .proto declares {message}"),
    }
}

/// Runs `protoc --<mode>=<message>` over `input` and returns what it printed.
fn protoc(mode: &str, message: &str, input: &[u8]) -> Vec<u8> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    let protoc = std::env::var_os("PROTOC");
    let mut child = Command::new(protoc.unwrap_or_else(|| "protoc".into()))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("-I")
        .arg(crates.join("apimachinery/proto"))
        .arg("-I")
        .arg(crates.join("image-api/proto"))
        .arg(format!("--{mode}={message}"))
        .arg(proto_file(message))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("protoc runs (hack/lib.sh installs it; or set PROTOC)");
    let mut stdin = child.stdin.take().expect("protoc stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().expect("protoc output");
    let written = writer.join().expect("stdin writer");
    assert!(
        output.status.success(),
        "protoc --{mode}={message} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    written.expect("protoc read its input");
    output.stdout
}

fn encode(message: &str, text: &str) -> Vec<u8> {
    protoc("encode", message, text.as_bytes())
}

fn decode(message: &str, raw: &[u8]) -> String {
    let printed = protoc("decode", message, raw);
    String::from_utf8(printed).expect("protoc prints text")
}

/// A text-format string literal holding `bytes`.
fn quote(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\{b:03o}");
            }
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------------------------
// protoc's text format, read back

/// A message as protoc prints it: its fields in wire order, nested messages as trees.
#[derive(Debug, Default)]
struct Text {
    fields: Vec<(String, Field)>,
}

#[derive(Debug)]
enum Field {
    Scalar(Vec<u8>),
    Message(Text),
}

impl Text {
    /// Parses `protoc --decode` output: one `name: value` or `name {` or `}` per line.
    fn parse(text: &str) -> Text {
        let mut stack = vec![(String::new(), Text::default())];
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if line == "}" {
                let (name, done) = stack.pop().expect("balanced braces");
                let parent = &mut stack.last_mut().expect("balanced braces").1;
                parent.fields.push((name, Field::Message(done)));
            } else if let Some(name) = line.strip_suffix(" {").filter(|n| !n.contains(':')) {
                stack.push((name.to_string(), Text::default()));
            } else {
                let Some((name, value)) = line.split_once(": ") else {
                    panic!("not protoc's text format: {line}");
                };
                let scalar = Field::Scalar(unquote(value));
                let parent = &mut stack.last_mut().expect("an open message").1;
                parent.fields.push((name.to_string(), scalar));
            }
        }
        let (_, root) = stack.pop().expect("the root message");
        assert!(stack.is_empty(), "unbalanced braces in {text}");
        root
    }

    /// The messages under `name`, in order (a repeated field's items).
    fn messages(&self, name: &str) -> Vec<&Text> {
        self.fields
            .iter()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, f)| match f {
                Field::Message(m) => Some(m),
                Field::Scalar(_) => None,
            })
            .collect()
    }

    /// The message at a dotted path, taking the first of repeated ones.
    fn at(&self, path: &str) -> &Text {
        path.split('.').fold(self, |text, name| {
            let first = text.messages(name).into_iter().next();
            first.unwrap_or_else(|| panic!("no {name} in {text:?}"))
        })
    }

    /// The scalar at a dotted path, None when it is not on the wire.
    fn bytes(&self, path: &str) -> Option<&[u8]> {
        let (parent, name) = match path.rsplit_once('.') {
            Some((parent, name)) => (self.at(parent), name),
            None => (self, path),
        };
        parent.fields.iter().find_map(|(n, f)| match f {
            Field::Scalar(value) if n == name => Some(value.as_slice()),
            _ => None,
        })
    }

    /// The scalar at a dotted path as text; "" when absent, as proto2 reads it.
    fn string(&self, path: &str) -> String {
        let bytes = self.bytes(path).unwrap_or_default();
        String::from_utf8_lossy(bytes).into_owned()
    }

    fn int(&self, path: &str) -> i64 {
        let text = self.string(path);
        match text.parse() {
            Ok(value) => value,
            Err(_) => panic!("{path} is {text:?}, not an integer"),
        }
    }

    /// A map field's entries.
    fn map(&self, name: &str) -> BTreeMap<String, String> {
        let entry = |e: &&Text| (e.string("key"), e.string("value"));
        self.messages(name).iter().map(entry).collect()
    }
}

/// A text-format value: string literals unescaped, anything else as printed.
fn unquote(value: &str) -> Vec<u8> {
    match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => unescape(inner),
        None => value.as_bytes().to_vec(),
    }
}

/// Undoes protoc's C escapes: \n \r \t, \" \' \\ and three-digit octal.
fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes().peekable();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b't') => out.push(b'\t'),
            Some(first @ b'0'..=b'7') => {
                let mut value = u32::from(first - b'0');
                for _ in 0..2 {
                    let Some(&digit @ b'0'..=b'7') = bytes.peek() else {
                        break;
                    };
                    value = value * 8 + u32::from(digit - b'0');
                    bytes.next();
                }
                out.push(u8::try_from(value).expect("an octal escape is one byte"));
            }
            Some(other) => out.push(other),
            None => out.push(b'\\'),
        }
    }
    out
}

/// RFC 3339 (a JSON metav1.Time) as Unix seconds.
fn unix_seconds(time: &Value) -> i64 {
    let text = time.as_str().expect("a timestamp string");
    let parsed: jiff::Timestamp = text.parse().expect("RFC 3339");
    parsed.as_second()
}

/// POSTs an image.openshift.io/v1 object given in text format, in protobuf both ways.
async fn post(c: &Client, path: &str, kind: &str, text: &str) -> Resp {
    let message = format!("github.com.openshift.api.image.v1.{kind}");
    let body = envelope(API_VERSION, kind, encode(&message, text));
    let headers = [("content-type", PROTOBUF), ("accept", PROTOBUF)];
    c.request(Method::POST, path, &headers, Some(body)).await
}

// ---------------------------------------------------------------------------------------------
// image streams: create, get, list, errors

/// Two DockerImage tags given by reference: they get status history at once and are never
/// imported, so the stream is complete without a registry.
fn stream_text(name: &str) -> String {
    let tag = |tag: &str, mode: &str, policy: &str| {
        let reference = format!("registry.example.com/team/{name}:{tag}");
        let from = quote(reference.as_bytes());
        format!(
            "tags {{ name: \"{tag}\" from {{ kind: \"DockerImage\" name: {from} }} reference: true \
             importPolicy {{ importMode: \"{mode}\" }} referencePolicy {{ type: \"{policy}\" }} }}"
        )
    };
    format!(
        "metadata {{ name: {} labels {{ key: \"team\" value: \"blue\" }} \
         annotations {{ key: \"note\" value: \"sent as protobuf\" }} }}\n\
         spec {{ lookupPolicy {{ local: true }} {} {} }}",
        quote(name.as_bytes()),
        tag("v1", "Legacy", "Source"),
        tag("v2", "PreserveOriginal", "Local")
    )
}

/// Steps 1 and 2: a protobuf POST answered in protobuf.
async fn create_stream(c: &Client) -> Text {
    let text = stream_text("web");
    let r = post(c, &streams(NS), "ImageStream", &text).await;
    assert_eq!(r.status, 201, "{}", describe(&r));
    let created = object(&r, API_VERSION, "ImageStream", IMAGE_STREAM);
    let meta = created.at("metadata");
    assert_eq!(meta.string("name"), "web");
    assert_eq!(meta.string("namespace"), NS);
    assert!(!meta.string("uid").is_empty(), "{meta:?}");
    assert!(meta.int("resourceVersion") > 0);
    assert_eq!(meta.int("generation"), 1);
    assert!(meta.int("creationTimestamp.seconds") > 1_700_000_000);
    let labels = meta.map("labels");
    assert_eq!(labels.get("team").map(String::as_str), Some("blue"));
    let tags = created.at("spec").messages("tags");
    let names: Vec<String> = tags.iter().map(|t| t.string("name")).collect();
    assert_eq!(names, ["v1", "v2"]);
    let v2 = tags[1];
    let from = v2.string("from.name");
    assert_eq!(from, "registry.example.com/team/web:v2");
    assert_eq!(v2.string("importPolicy.importMode"), "PreserveOriginal");
    assert_eq!(v2.string("referencePolicy.type"), "Local");
    assert_eq!(tags[0].string("reference"), "true");
    assert_eq!(created.string("spec.lookupPolicy.local"), "true");
    // Reference tags are recorded in status straight away; TagEvent.created is a Time.
    let history = created.at("status").messages("tags");
    assert_eq!(history.len(), 2, "{created:?}");
    let v1 = history.iter().find(|t| t.string("tag") == "v1");
    let latest = v1.expect("v1's history").at("items");
    let reference = latest.string("dockerImageReference");
    assert_eq!(reference, "registry.example.com/team/web:v1");
    assert!(latest.int("created.seconds") > 1_700_000_000);
    created
}

/// Step 3: the same object read as JSON and as protobuf.
async fn get_agrees_with_json(c: &Client, created: &Text) {
    let json = c.get(&stream(NS, "web")).await.json();
    // client-go's Accept when protobuf is configured.
    let accept = "application/vnd.kubernetes.protobuf, */*";
    let r = c.get_accept(&stream(NS, "web"), accept).await;
    assert_eq!(r.status, 200, "{}", describe(&r));
    let proto = object(&r, API_VERSION, "ImageStream", IMAGE_STREAM);
    let meta = proto.at("metadata");
    for field in ["name", "namespace", "uid", "resourceVersion"] {
        assert_eq!(meta.string(field), json["metadata"][field], "{field}");
    }
    assert_eq!(meta.string("uid"), created.string("metadata.uid"));
    let generation = meta.int("generation");
    assert_eq!(generation, json["metadata"]["generation"]);
    assert_eq!(
        meta.int("creationTimestamp.seconds"),
        unix_seconds(&json["metadata"]["creationTimestamp"])
    );
    assert_eq!(json!(meta.map("labels")), json["metadata"]["labels"]);
    let annotations = json!(meta.map("annotations"));
    assert_eq!(annotations, json["metadata"]["annotations"]);
    let tags = proto.at("spec").messages("tags");
    let expected = json["spec"]["tags"].as_array().expect("spec tags");
    assert_eq!(tags.len(), expected.len());
    for (tag, expected) in tags.iter().zip(expected) {
        assert_eq!(tag.string("name"), expected["name"]);
        assert_eq!(tag.string("from.kind"), expected["from"]["kind"]);
        assert_eq!(tag.string("from.name"), expected["from"]["name"]);
        assert_eq!(tag.int("generation"), expected["generation"]);
        let policy = &expected["referencePolicy"]["type"];
        assert_eq!(tag.string("referencePolicy.type"), *policy);
    }
    let history = proto.at("status").messages("tags");
    let expected = json["status"]["tags"].as_array().expect("status tags");
    assert_eq!(history.len(), expected.len());
    for (tag, expected) in history.iter().zip(expected) {
        assert_eq!(tag.string("tag"), expected["tag"]);
        let item = tag.at("items");
        let first = &expected["items"][0];
        assert_eq!(item.string("image"), first["image"]);
        let seconds = unix_seconds(&first["created"]);
        assert_eq!(item.int("created.seconds"), seconds);
    }
}

/// Step 4: a protobuf LIST is an ImageStreamList in the envelope.
async fn list_in_protobuf(c: &Client, created: &Text) {
    let r = c.get_accept(&streams(NS), PROTOBUF).await;
    assert_eq!(r.status, 200, "{}", describe(&r));
    let list = object(&r, API_VERSION, "ImageStreamList", IMAGE_STREAM_LIST);
    let created_at = created.int("metadata.resourceVersion");
    assert!(list.int("metadata.resourceVersion") >= created_at);
    let items = list.messages("items");
    assert_eq!(items.len(), 1, "{list:?}");
    assert_eq!(items[0].string("metadata.name"), "web");
    let uid = created.string("metadata.uid");
    assert_eq!(items[0].string("metadata.uid"), uid);
    assert_eq!(items[0].at("spec").messages("tags").len(), 2);
}

/// Step 5: errors are a meta/v1 Status in the envelope, as apiVersion v1.
async fn errors_are_protobuf_statuses(c: &Client) {
    let r = c.get_accept(&stream(NS, "missing"), PROTOBUF).await;
    assert_eq!(r.status, 404);
    let status = object(&r, "v1", "Status", STATUS);
    assert_eq!(status.string("status"), "Failure");
    assert_eq!(status.int("code"), 404);
    assert_eq!(status.string("reason"), "NotFound");
    assert_eq!(
        status.string("message"),
        "imagestreams.image.openshift.io \"missing\" not found"
    );
    assert_eq!(status.string("details.name"), "missing");
    assert_eq!(status.string("details.group"), "image.openshift.io");
    assert_eq!(status.string("details.kind"), "imagestreams");

    // A protobuf body without kube's prefix is the client's mistake.
    let headers = [("content-type", PROTOBUF), ("accept", PROTOBUF)];
    let raw = encode(IMAGE_STREAM, &stream_text("bare"));
    let r = c
        .request(Method::POST, &streams(NS), &headers, Some(raw))
        .await;
    assert_eq!(r.status, 400, "{}", describe(&r));
    assert_eq!(c.get(&stream(NS, "bare")).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_streams_are_served_in_protobuf() {
    let server = start_embedded(&[]).await;
    let c = server.client();
    let created = create_stream(&c).await;
    get_agrees_with_json(&c, &created).await;
    list_in_protobuf(&c, &created).await;
    errors_are_protobuf_statuses(&c).await;
}

// ---------------------------------------------------------------------------------------------
// watches

/// A protobuf watch body: 4-byte big-endian lengths, each followed by a WatchEvent.
struct Frames {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Frames {
    async fn next(&mut self) -> Vec<u8> {
        loop {
            if let Some(frame) = self.take() {
                return frame;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.resp.chunk())
                .await
                .expect("a watch frame within 10 s")
                .expect("watch body")
                .expect("the watch is still open");
            self.buf.extend_from_slice(&chunk);
        }
    }

    fn take(&mut self) -> Option<Vec<u8>> {
        let header: [u8; 4] = self.buf.get(..4)?.try_into().ok()?;
        let end = 4 + u32::from_be_bytes(header) as usize;
        if self.buf.len() < end {
            return None;
        }
        Some(self.buf.drain(..end).skip(4).collect())
    }
}

/// One frame as (event type, the enveloped object's text).
fn watch_event(frame: &[u8]) -> (String, Text) {
    assert!(
        !frame.starts_with(MAGIC),
        "watch events are not enveloped themselves"
    );
    let event = Text::parse(&decode(WATCH_EVENT, frame));
    let raw = event.bytes("object.raw").expect("the event's object");
    let object = open(raw);
    assert_eq!(
        (object.api_version.as_str(), object.kind.as_str()),
        (API_VERSION, "ImageStream")
    );
    let stream = Text::parse(&decode(IMAGE_STREAM, &object.raw));
    (event.string("type"), stream)
}

/// Step 6: a watch in protobuf, from a list's resourceVersion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_stream_length_prefixed_events() {
    let server = start_embedded(&[]).await;
    let c = server.client();
    let list = c.get(&streams(NS)).await.json();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("list resourceVersion")
        .to_string();
    let http = https_client(server.data_dir(), Some(&admin_token(server.data_dir())));
    let path = format!("{}?watch=true&resourceVersion={rv}", streams(NS));
    let resp = http
        .get(format!("{}{path}", server.base))
        .header("accept", PROTOBUF)
        .send()
        .await
        .expect("watch request");
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp.headers().get("content-type").cloned();
    assert_eq!(content_type, Some(HeaderValue::from_static(WATCH_PROTOBUF)));
    let mut frames = Frames {
        resp,
        buf: Vec::new(),
    };

    let body = json!({"metadata": {"name": "watched", "labels": {"via": "watch"}}});
    let r = c.post(&streams(NS), &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let (kind, added) = watch_event(&frames.next().await);
    assert_eq!(kind, "ADDED");
    assert_eq!(added.string("metadata.name"), "watched");
    assert_eq!(added.string("metadata.namespace"), NS);
    let labels = added.at("metadata").map("labels");
    assert_eq!(labels.get("via").map(String::as_str), Some("watch"));
    assert_eq!(added.string("metadata.uid"), r.json()["metadata"]["uid"]);

    assert_eq!(c.delete(&stream(NS, "watched")).await.status, 200);
    let (kind, deleted) = watch_event(&frames.next().await);
    assert_eq!(kind, "DELETED");
    assert_eq!(deleted.string("metadata.name"), "watched");
}

// ---------------------------------------------------------------------------------------------
// images and mappings

fn image_text() -> String {
    let metadata = json!({"kind": "DockerImage", "apiVersion": "image.openshift.io/1.0",
        "Id": DIGEST, "Architecture": "amd64", "Os": "linux", "Size": 6912});
    let layer = |name: &str, size: u32| {
        format!("dockerImageLayers {{ name: \"{name}\" size: {size} mediaType: \"{LAYER_TYPE}\" }}")
    };
    format!(
        "metadata {{ name: \"{DIGEST}\" }}\n\
         dockerImageReference: \"registry.example.com/team/web@{DIGEST}\"\n\
         dockerImageMetadata {{ raw: {} }}\n\
         dockerImageMetadataVersion: \"1.0\"\n{}\n{}\n",
        quote(metadata.to_string().as_bytes()),
        layer(LAYER_1, 1234),
        layer(LAYER_2, 5678)
    )
}

/// Checks an Image read back in protobuf: raw JSON metadata, layers in order.
fn assert_image(image: &Text) {
    assert_eq!(image.string("metadata.name"), DIGEST);
    assert_eq!(
        image.string("dockerImageReference"),
        format!("registry.example.com/team/web@{DIGEST}")
    );
    let Some(raw) = image.bytes("dockerImageMetadata.raw") else {
        panic!("no dockerImageMetadata in {image:?}");
    };
    let metadata: Value = serde_json::from_slice(raw).expect("JSON");
    assert_eq!(metadata["Architecture"], "amd64");
    assert_eq!(metadata["Size"], 6912);
    let layers: Vec<(String, i64)> = image
        .messages("dockerImageLayers")
        .iter()
        .map(|l| (l.string("name"), l.int("size")))
        .collect();
    assert_eq!(
        layers,
        [(LAYER_1.to_string(), 1234), (LAYER_2.to_string(), 5678)]
    );
    assert_eq!(image.string("dockerImageLayers.mediaType"), LAYER_TYPE);
}

/// Step 7: a cluster-scoped Image with a RawExtension round-trips, and a mapping is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_and_mappings_in_protobuf() {
    let server = start_embedded(&[]).await;
    let c = server.client();
    let r = post(&c, IMAGES, "Image", &image_text()).await;
    assert_eq!(r.status, 201, "{}", describe(&r));
    assert_image(&object(&r, API_VERSION, "Image", IMAGE));
    let path = format!("{IMAGES}/{DIGEST}");
    let r = c.get_accept(&path, PROTOBUF).await;
    assert_eq!(r.status, 200, "{}", describe(&r));
    assert_image(&object(&r, API_VERSION, "Image", IMAGE));
    let json = c.get(&path).await.json();
    assert_eq!(json["dockerImageMetadata"]["Architecture"], "amd64");
    assert_eq!(json["dockerImageLayers"][1]["size"], 5678);

    let body = json!({"metadata": {"name": "mapped"}});
    let r = c.post(&streams(NS), &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let mapping = format!(
        "metadata {{ name: \"mapped\" }}\n\
         image {{ metadata {{ name: \"{MAPPED_DIGEST}\" }} \
         dockerImageReference: \"registry.example.com/team/mapped@{MAPPED_DIGEST}\" }}\n\
         tag: \"latest\"\n"
    );
    let path = format!("/apis/image.openshift.io/v1/namespaces/{NS}/imagestreammappings");
    let r = post(&c, &path, "ImageStreamMapping", &mapping).await;
    assert_eq!(r.status, 201, "{}", describe(&r));
    // Mappings answer with a Status, in protobuf like any other reply.
    let status = object(&r, "v1", "Status", STATUS);
    assert_eq!(status.string("status"), "Success");
    assert_eq!(status.int("code"), 201);
    let s = c.get(&stream(NS, "mapped")).await.json();
    assert_eq!(s["status"]["tags"][0]["tag"], "latest");
    assert_eq!(s["status"]["tags"][0]["items"][0]["image"], MAPPED_DIGEST);
    assert_eq!(
        c.get(&format!("{IMAGES}/{MAPPED_DIGEST}")).await.status,
        200
    );
}

// ---------------------------------------------------------------------------------------------
// tables and metadata views

/// Step 8: Tables stay JSON even when protobuf is asked for first (kube offers Tables in JSON
/// and YAML only); PartialObjectMetadata views are served in protobuf.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_stay_json_and_metadata_views_are_protobuf() {
    let server = start_embedded(&[]).await;
    let c = server.client();
    let body = json!({"metadata": {"name": "listed"}});
    let r = c.post(&streams(NS), &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let uid = r.json()["metadata"]["uid"].clone();

    for accept in [
        "application/json;as=Table;v=v1;g=meta.k8s.io, application/vnd.kubernetes.protobuf, \
         application/json",
        "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io, \
         application/json;as=Table;v=v1;g=meta.k8s.io, application/json",
    ] {
        let r = c.get_accept(&streams(NS), accept).await;
        assert_eq!(r.status, 200, "{accept}: {}", describe(&r));
        let content_type = r.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}"
        );
        let table = r.json();
        assert_eq!(table["kind"], "Table", "{accept}");
        assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(table["rows"][0]["cells"][0], "listed");
    }

    let r = c.get_accept(&streams(NS), METADATA_LIST_ACCEPT).await;
    assert_eq!(r.status, 200, "{}", describe(&r));
    let opened = open(&r.body);
    assert_eq!(opened.api_version, "meta.k8s.io/v1");
    assert_eq!(opened.kind, "PartialObjectMetadataList");
    let list = Text::parse(&decode(METADATA_LIST, &opened.raw));
    assert!(list.int("metadata.resourceVersion") > 0);
    assert_eq!(list.string("items.metadata.name"), "listed");
    assert_eq!(list.string("items.metadata.uid"), uid);

    let r = c.get_accept(&stream(NS, "listed"), METADATA_ACCEPT).await;
    assert_eq!(r.status, 200, "{}", describe(&r));
    let opened = open(&r.body);
    assert_eq!(opened.kind, "PartialObjectMetadata");
    let one = Text::parse(&decode(METADATA, &opened.raw));
    assert_eq!(one.string("metadata.uid"), uid);
    assert!(one.int("metadata.creationTimestamp.seconds") > 1_700_000_000);
}

// ---------------------------------------------------------------------------------------------
// the helpers' own checks

#[test]
fn text_format_round_trips_through_protoc() {
    let bytes = b"{\"a\":\"\\\\x\"}\x00\x01\n\xff".to_vec();
    let text = format!("dockerImageMetadata {{ raw: {} }}", quote(&bytes));
    let printed = decode(IMAGE, &encode(IMAGE, &text));
    let parsed = Text::parse(&printed);
    let raw = parsed.bytes("dockerImageMetadata.raw");
    assert_eq!(raw, Some(bytes.as_slice()));
    assert_eq!(parsed.bytes("dockerImageReference"), None);
    assert_eq!(parsed.string("dockerImageReference"), "");
}

#[test]
fn envelopes_round_trip() {
    let body = envelope(API_VERSION, "ImageStream", vec![0x0a, 0x00]);
    assert!(body.starts_with(MAGIC));
    // Go writes contentEncoding (3) and contentType (4) last, empty.
    assert!(body.ends_with(&[0x1a, 0x00, 0x22, 0x00]), "{body:?}");
    let opened = open(&body);
    assert_eq!(opened.api_version, API_VERSION);
    assert_eq!(opened.kind, "ImageStream");
    assert_eq!(opened.raw, [0x0a, 0x00]);
    assert!(try_open(b"{\"kind\":\"ImageStream\"}").is_none());
}
