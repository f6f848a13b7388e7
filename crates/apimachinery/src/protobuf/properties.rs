//! Property tests of the transcoder, which reads network input (issue 13's rule): decoding
//! arbitrary and near-valid bytes never panics and fails only with decode errors, what
//! decodes re-encodes, and one round trip reaches a fixed point. 256 cases per property in
//! the suite, `PROPTEST_CASES` for long runs (`hack/fuzz`).

use std::sync::OnceLock;

use proptest::prelude::*;
use prost::encoding::{encode_key, encode_varint, WireType};

use super::tests::test_schema;
use super::tests_meta::meta_schema;
use super::{
    decode_envelope, decode_watch_event, encode_envelope, split_watch_frame, watch_frame,
    ProtoError, Schema, Unknown, STATUS_MESSAGE,
};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig::with_cases(cases)
}

fn hand_built() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(test_schema)
}

const META_MESSAGES: &[&str] = &[
    "ObjectMeta",
    "ListMeta",
    "Status",
    "DeleteOptions",
    "ManagedFieldsEntry",
    "OwnerReference",
    "WatchEvent",
    "List",
];

/// Every plain message to decode as: the hand-built ones and meta/v1's (those present).
fn messages() -> Vec<(&'static Schema, String)> {
    let mut all: Vec<(&'static Schema, String)> = ["test.Scalars", "test.Node", "test.Holder"]
        .iter()
        .map(|m| (hand_built(), m.to_string()))
        .collect();
    for message in META_MESSAGES {
        let name = format!("k8s.io.apimachinery.pkg.apis.meta.v1.{message}");
        if meta_schema().has_message(&name) {
            all.push((meta_schema(), name));
        }
    }
    all
}

#[derive(Clone, Debug)]
enum Payload {
    Varint(u64),
    Fixed32(u32),
    Fixed64(u64),
    Bytes(Vec<u8>),
}

/// Length-delimited payloads that are sometimes JSON, times or quantities, so the special
/// types' happy paths run too.
const TEXTISH: &str = concat!(
    r#"\{\}|\[[0-9,]{0,6}\]|"[a-z]{0,4}"|-?[0-9]{1,6}|"#,
    r#"[a-z0-9:.{}"\[\],TZ-]{0,12}"#
);

fn payload(nested: BoxedStrategy<Vec<u8>>) -> impl Strategy<Value = Payload> {
    prop_oneof![
        any::<u64>().prop_map(Payload::Varint),
        (0u64..300).prop_map(Payload::Varint),
        any::<u32>().prop_map(Payload::Fixed32),
        any::<u64>().prop_map(Payload::Fixed64),
        TEXTISH.prop_map(|s| Payload::Bytes(s.into_bytes())),
        nested.prop_map(Payload::Bytes),
    ]
}

fn write_field(number: u32, payload: &Payload, out: &mut Vec<u8>) {
    match payload {
        Payload::Varint(v) => {
            encode_key(number, WireType::Varint, out);
            encode_varint(*v, out);
        }
        Payload::Fixed32(v) => {
            encode_key(number, WireType::ThirtyTwoBit, out);
            out.extend_from_slice(&v.to_le_bytes());
        }
        Payload::Fixed64(v) => {
            encode_key(number, WireType::SixtyFourBit, out);
            out.extend_from_slice(&v.to_le_bytes());
        }
        Payload::Bytes(b) => {
            encode_key(number, WireType::LengthDelimited, out);
            encode_varint(b.len() as u64, out);
            out.extend_from_slice(b);
        }
    }
}

/// A well-formed message of low field numbers (where the real fields are), each field a
/// random payload or a nested message of the same kind.
fn fields(nested: BoxedStrategy<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((1u32..20, payload(nested)), 0..6).prop_map(|fields| {
        let mut out = Vec::new();
        for (number, payload) in &fields {
            write_field(*number, payload, &mut out);
        }
        out
    })
}

fn message_bytes() -> impl Strategy<Value = Vec<u8>> {
    fields(Just(Vec::new()).boxed()).prop_recursive(4, 48, 6, fields)
}

fn check_decode_error(message: &str, err: &ProtoError) -> Result<(), TestCaseError> {
    prop_assert!(
        matches!(err, ProtoError::Decode { .. } | ProtoError::Envelope(_)),
        "{} fails with {:?}",
        message,
        err
    );
    Ok(())
}

/// decode, encode, decode, encode: the second round must change nothing.
fn check_fixed_point(schema: &Schema, message: &str, bytes: &[u8]) -> Result<(), TestCaseError> {
    let first = match schema.decode(message, bytes) {
        Ok(value) => value,
        Err(err) => return check_decode_error(message, &err),
    };
    let fail =
        |what: &str, err: ProtoError| TestCaseError::fail(format!("{message}: {what}: {err}"));
    let encoded = schema
        .encode(message, &first)
        .map_err(|e| fail(&format!("{first} does not encode"), e))?;
    let second = schema
        .decode(message, &encoded)
        .map_err(|e| fail("the re-encoded bytes do not decode", e))?;
    let again = schema
        .encode(message, &second)
        .map_err(|e| fail(&format!("{second} does not encode"), e))?;
    prop_assert_eq!(&again, &encoded, "{}: {}", message, second);
    let third = schema
        .decode(message, &again)
        .map_err(|e| fail("the bytes do not decode a second time", e))?;
    prop_assert_eq!(third, second);
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        for (schema, message) in messages() {
            if let Err(err) = schema.decode(&message, &bytes) {
                check_decode_error(&message, &err)?;
            }
        }
        let mut enveloped = b"k8s\0".to_vec();
        enveloped.extend_from_slice(&bytes);
        for body in [&bytes, &enveloped] {
            if let Err(err) = meta_schema().decode_object(STATUS_MESSAGE, body) {
                check_decode_error(STATUS_MESSAGE, &err)?;
            }
            if let Err(err) = decode_watch_event(body) {
                check_decode_error("WatchEvent", &err)?;
            }
            if let Some((event, rest)) = split_watch_frame(body) {
                prop_assert_eq!(event.len() + rest.len() + 4, body.len());
            }
        }
    }

    #[test]
    fn near_valid_messages_reach_a_fixed_point(bytes in message_bytes()) {
        for (schema, message) in messages() {
            check_fixed_point(schema, &message, &bytes)?;
        }
    }

    #[test]
    fn envelopes_and_frames_round_trip(
        api_version in "[a-z0-9./]{0,12}",
        kind in "[A-Za-z]{0,12}",
        raw in prop::collection::vec(any::<u8>(), 0..64),
        event_type in "ADDED|MODIFIED|DELETED|BOOKMARK|ERROR",
    ) {
        let envelope = encode_envelope(&api_version, &kind, &raw);
        let expected = Unknown { api_version, kind, raw };
        prop_assert_eq!(decode_envelope(&envelope).ok(), Some(expected));
        let frame = watch_frame(&event_type, &envelope);
        let split = split_watch_frame(&frame);
        prop_assert!(split.is_some_and(|(_, rest)| rest.is_empty()));
        let event = decode_watch_event(&frame[4..]);
        prop_assert!(event.is_ok(), "{:?}", event);
        let event = event.expect("checked");
        prop_assert_eq!(event.event_type, event_type);
        prop_assert_eq!(event.object, envelope);
    }
}
