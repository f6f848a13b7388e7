//! The transcoder over the real meta/v1 and runtime descriptors (`DESCRIPTOR_SET`): round
//! trips of ObjectMeta, Status and DeleteOptions, hand-computed bytes for ListMeta, Time and
//! MicroTime, and kube's envelope and watch framing.

use std::sync::OnceLock;

use serde_json::{json, Value};

use super::{
    decode_envelope, decode_watch_event, encode_envelope, split_watch_frame, watch_frame,
    ProtoError, Schema, DELETE_OPTIONS_MESSAGE, DESCRIPTOR_SET, STATUS_MESSAGE,
};

const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";

pub(super) fn meta_schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        Schema::from_descriptor_sets(&[DESCRIPTOR_SET]).expect("the meta descriptors load")
    })
}

fn name(message: &str) -> String {
    format!("{META}.{message}")
}

fn encode(message: &str, value: &Value) -> Vec<u8> {
    meta_schema()
        .encode(&name(message), value)
        .expect("encodes")
}

fn decode(message: &str, bytes: &[u8]) -> Value {
    meta_schema()
        .decode(&name(message), bytes)
        .expect("decodes")
}

fn round_trip(message: &str, value: &Value) -> Value {
    decode(message, &encode(message, value))
}

#[test]
fn object_meta_round_trips() {
    let meta = json!({
        "name": "busybox", "generateName": "busy-", "namespace": "ns", "uid": "u-1",
        "resourceVersion": "12", "generation": 3,
        "creationTimestamp": "2026-11-29T14:00:00Z",
        "deletionTimestamp": "2026-11-29T15:00:00Z",
        "deletionGracePeriodSeconds": 30,
        "labels": {"b": "2", "a": "1"},
        "annotations": {"note": ""},
        "ownerReferences": [{
            "apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u-2",
            "controller": true, "blockOwnerDeletion": false
        }],
        "finalizers": ["f1", "f2"],
        "managedFields": [{
            "manager": "kubectl", "operation": "Update", "apiVersion": "v1",
            "time": "2026-11-29T14:00:00Z", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:a": {}}}},
            "subresource": "status"
        }]
    });
    assert_eq!(round_trip("ObjectMeta", &meta), meta);
}

#[test]
fn times_are_rfc3339_seconds_on_the_wire() {
    let at = |text: &str| json!({ "creationTimestamp": text });
    let seconds = [0xe0, 0xdf, 0xb0, 0xd8, 0x06];
    let expected = [&[0x42_u8, 0x08, 0x08][..], &seconds, &[0x10, 0x00]].concat();
    assert_eq!(encode("ObjectMeta", &at("2026-11-29T14:00:00Z")), expected);
    // Any offset or fraction parses; Time keeps whole seconds in UTC.
    assert_eq!(
        encode("ObjectMeta", &at("2026-11-29T16:00:00+02:00")),
        expected
    );
    assert_eq!(
        encode("ObjectMeta", &at("2026-11-29T14:00:00.9Z")),
        expected
    );
    assert_eq!(decode("ObjectMeta", &expected), at("2026-11-29T14:00:00Z"));
    // Time ignores nanoseconds on the wire, as upstream's Unmarshal does.
    assert_eq!(
        decode("ObjectMeta", &[0x42, 0x04, 0x08, 0x01, 0x10, 0x05]),
        at("1970-01-01T00:00:01Z")
    );
    // Go counts down to the calendar second before the epoch.
    let before = encode("ObjectMeta", &at("1969-12-31T23:59:59.5Z"));
    assert_eq!(decode("ObjectMeta", &before), at("1969-12-31T23:59:59Z"));
}

#[test]
fn the_zero_time_is_null() {
    let zero_seconds = [0x80, 0x92, 0xb8, 0xc3, 0x98, 0xfe, 0xff, 0xff, 0xff, 0x01];
    let on_wire = [&[0x42_u8, 0x0b, 0x08][..], &zero_seconds].concat();
    let null = json!({ "creationTimestamp": null });
    assert_eq!(decode("ObjectMeta", &on_wire), null);
    assert_eq!(decode("ObjectMeta", &[0x42, 0x00]), null);
    let zero = json!({ "creationTimestamp": "0001-01-01T00:00:00Z" });
    assert_eq!(encode("ObjectMeta", &zero), [0x42, 0x00]);
    assert_eq!(encode("ObjectMeta", &null), Vec::<u8>::new());
}

#[test]
fn micro_times_keep_microseconds() {
    let text = json!("2026-11-29T14:00:00.123456Z");
    let bytes = encode("MicroTime", &text);
    let seconds = [0x08, 0xe0, 0xdf, 0xb0, 0xd8, 0x06];
    let nanos = [0x10, 0x80, 0x94, 0xef, 0x3a];
    assert_eq!(bytes, [&seconds[..], &nanos[..]].concat());
    assert_eq!(decode("MicroTime", &bytes), text);
    let nanoseconds = [&seconds[..], &[0x10, 0x95, 0x9a, 0xef, 0x3a]].concat();
    assert_eq!(decode("MicroTime", &nanoseconds), text);
    assert_eq!(
        decode("MicroTime", &seconds),
        json!("2026-11-29T14:00:00.000000Z")
    );
    let err = meta_schema()
        .encode(&name("MicroTime"), &json!("yesterday"))
        .expect_err("not a time");
    assert!(err.to_string().contains("invalid time"), "{err}");
}

#[test]
fn list_meta_has_its_field_numbers() {
    let bytes = encode(
        "ListMeta",
        &json!({"resourceVersion": "5", "continue": "x", "remainingItemCount": 0}),
    );
    assert_eq!(bytes, [0x12, 0x01, b'5', 0x1a, 0x01, b'x', 0x20, 0x00]);
    assert_eq!(
        decode("ListMeta", &[0x0a, 0x00, 0x12, 0x01, b'5']),
        json!({"selfLink": "", "resourceVersion": "5"})
    );
}

#[test]
fn status_round_trips_in_its_envelope() {
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": "m", "reason": "Invalid",
        "details": {
            "name": "n", "group": "g", "kind": "k", "uid": "",
            "causes": [
                {"reason": "FieldValueInvalid", "message": "bad", "field": "spec.x"},
                {"reason": "FieldValueRequired"}
            ],
            "retryAfterSeconds": 0
        },
        "code": 422
    });
    let schema = meta_schema();
    let bytes = schema
        .encode_object(STATUS_MESSAGE, &status)
        .expect("encodes");
    assert!(bytes.starts_with(b"k8s\0"));
    let decoded = schema
        .decode_object(STATUS_MESSAGE, &bytes)
        .expect("decodes");
    assert_eq!(decoded, status);
    let keys: Vec<&String> = decoded
        .as_object()
        .expect("an object")
        .keys()
        .take(2)
        .collect();
    assert_eq!(keys, ["kind", "apiVersion"]);

    let small = encode("Status", &json!({"status": "Failure", "code": 404}));
    let failure = [&[0x12_u8, 0x07][..], b"Failure", &[0x30, 0x94, 0x03]].concat();
    assert_eq!(small, failure);
}

#[test]
fn delete_options_keep_zero_values() {
    let options = json!({
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": "u", "resourceVersion": "7"},
        "orphanDependents": false,
        "propagationPolicy": "Background",
        "dryRun": ["All"]
    });
    let bytes = meta_schema()
        .encode(DELETE_OPTIONS_MESSAGE, &options)
        .expect("encodes");
    let head = [
        0x08, 0x00, 0x12, 0x06, 0x0a, 0x01, b'u', 0x12, 0x01, b'7', 0x18, 0x00,
    ];
    assert_eq!(bytes[..head.len()], head);
    let decoded = meta_schema()
        .decode(DELETE_OPTIONS_MESSAGE, &bytes)
        .expect("decodes");
    assert_eq!(decoded, options);
    assert_eq!(decoded["gracePeriodSeconds"], json!(0));
}

#[test]
fn fields_v1_and_raw_extensions_are_json_inline() {
    let entry = encode("ManagedFieldsEntry", &json!({"fieldsV1": {"f:a": {}}}));
    let raw = br#"{"f:a":{}}"#;
    assert_eq!(entry, [&[0x3a_u8, 0x0c, 0x0a, 0x0a][..], raw].concat());

    let frame = watch_frame("MODIFIED", br#"{"a":[1,"x"]}"#);
    let event = decode("WatchEvent", &frame[4..]);
    assert_eq!(
        event,
        json!({"type": "MODIFIED", "object": {"a": [1, "x"]}})
    );
    let not_json = watch_frame("ADDED", b"k8s\0\x0a\x00");
    let err = meta_schema()
        .decode(&name("WatchEvent"), &not_json[4..])
        .expect_err("raw is protobuf, not JSON");
    assert!(err.to_string().contains("object: raw is not JSON"), "{err}");
}

#[test]
fn envelope_bytes_match_upstream() {
    let bytes = encode_envelope("v1", "Status", &[0x0a, 0x00]);
    let type_meta = [&[0x0a_u8, 0x02][..], b"v1", &[0x12, 0x06], b"Status"].concat();
    let expected = [
        &b"k8s\0"[..],
        &[0x0a, 0x0c],
        type_meta.as_slice(),
        &[0x12, 0x02, 0x0a, 0x00],
        &[0x1a, 0x00, 0x22, 0x00],
    ]
    .concat();
    assert_eq!(bytes, expected);
    let unknown = decode_envelope(&bytes).expect("decodes");
    assert_eq!(
        (unknown.api_version.as_str(), unknown.kind.as_str()),
        ("v1", "Status")
    );
    assert_eq!(unknown.raw, [0x0a, 0x00]);
}

#[test]
fn envelope_errors_are_upstreams() {
    let message = |bytes: &[u8]| match decode_envelope(bytes) {
        Err(ProtoError::Envelope(message)) => message,
        other => panic!("{bytes:?}: {other:?}"),
    };
    assert_eq!(message(b""), "empty data");
    assert_eq!(
        message(b"{}"),
        "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
    );
    assert_eq!(message(b"k8s\0"), "empty body");
    let truncated = decode_envelope(b"k8s\0\x0a\x05\x0a");
    assert!(
        matches!(truncated, Err(ProtoError::Decode { .. })),
        "{truncated:?}"
    );
    let wrong = decode_envelope(b"k8s\0\x10\x01");
    assert!(matches!(wrong, Err(ProtoError::Decode { .. })), "{wrong:?}");
}

#[test]
fn watch_frames_are_length_prefixed_events() {
    let object = encode_envelope("v1", "Status", &[0x30, 0x01]);
    let frame = watch_frame("ADDED", &object);
    let event = [
        &[0x0a_u8, 0x05][..],
        b"ADDED",
        &[0x12, object.len() as u8 + 2, 0x0a, object.len() as u8],
        object.as_slice(),
    ]
    .concat();
    assert_eq!(frame[..4], (event.len() as u32).to_be_bytes());
    assert_eq!(frame[4..], event);

    let mut stream = frame.clone();
    stream.extend(watch_frame("DELETED", &object));
    let (first, rest) = split_watch_frame(&stream).expect("a whole frame");
    let decoded = decode_watch_event(first).expect("decodes");
    assert_eq!(decoded.event_type, "ADDED");
    assert_eq!(decoded.object, object);
    let (second, rest) = split_watch_frame(rest).expect("a second frame");
    assert_eq!(
        decode_watch_event(second).expect("decodes").event_type,
        "DELETED"
    );
    assert!(rest.is_empty());
    assert!(split_watch_frame(&frame[..frame.len() - 1]).is_none());
    assert!(split_watch_frame(&frame[..3]).is_none());
    assert!(decode_watch_event(&[0x12, 0x03, 0x0a, 0x05]).is_err());
}
