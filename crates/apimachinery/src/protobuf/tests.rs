//! The transcoder over a hand-built schema: every scalar type, packed and unpacked lists,
//! maps, the special types by name, and hostile input. Expected bytes are computed by hand
//! from the wire format, so field numbers and wire types are proven, not just
//! self-consistent.

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet, MessageOptions,
};
use serde_json::{json, Value};

use super::{ProtoError, Schema, MAX_DEPTH};

const SCALARS: &str = "test.Scalars";
const NODE: &str = "test.Node";
const HOLDER: &str = "test.Holder";
const INT_OR_STRING: &str = "k8s.io.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "k8s.io.apimachinery.pkg.api.resource.Quantity";

fn field(name: &str, number: i32, ty: Type, label: Label) -> FieldDescriptorProto {
    FieldDescriptorProto {
        name: Some(name.to_owned()),
        number: Some(number),
        label: Some(label as i32),
        r#type: Some(ty as i32),
        ..Default::default()
    }
}

fn message_field(name: &str, number: i32, type_name: &str, label: Label) -> FieldDescriptorProto {
    FieldDescriptorProto {
        type_name: Some(format!(".{type_name}")),
        ..field(name, number, Type::Message, label)
    }
}

fn message(name: &str, field: Vec<FieldDescriptorProto>) -> DescriptorProto {
    DescriptorProto {
        name: Some(name.to_owned()),
        field,
        ..Default::default()
    }
}

fn map_entry(name: &str, key: Type, value: FieldDescriptorProto) -> DescriptorProto {
    DescriptorProto {
        options: Some(MessageOptions {
            map_entry: Some(true),
            ..Default::default()
        }),
        ..message(name, vec![field("key", 1, key, Label::Optional), value])
    }
}

fn file(name: &str, package: &str, message_type: Vec<DescriptorProto>) -> FileDescriptorProto {
    FileDescriptorProto {
        name: Some(name.to_owned()),
        package: Some(package.to_owned()),
        message_type,
        ..Default::default()
    }
}

fn scalars_message() -> DescriptorProto {
    use Label::{Optional, Repeated};
    let mut scalars = message(
        "Scalars",
        vec![
            field("i32", 1, Type::Int32, Optional),
            field("i64", 2, Type::Int64, Optional),
            field("u32", 3, Type::Uint32, Optional),
            field("u64", 4, Type::Uint64, Optional),
            field("s32", 5, Type::Sint32, Optional),
            field("s64", 6, Type::Sint64, Optional),
            field("b", 7, Type::Bool, Optional),
            field("f32", 8, Type::Fixed32, Optional),
            field("f64", 9, Type::Fixed64, Optional),
            field("sf32", 10, Type::Sfixed32, Optional),
            field("sf64", 11, Type::Sfixed64, Optional),
            field("fl", 12, Type::Float, Optional),
            field("db", 13, Type::Double, Optional),
            field("s", 14, Type::String, Optional),
            field("by", 15, Type::Bytes, Optional),
            field("ri", 16, Type::Int32, Repeated),
            field("rs", 17, Type::String, Repeated),
            message_field("im", 18, "test.Scalars.ImEntry", Repeated),
            message_field("node", 19, NODE, Optional),
            message_field("nodes", 20, "test.Scalars.NodesEntry", Repeated),
        ],
    );
    scalars.nested_type = vec![
        map_entry(
            "ImEntry",
            Type::Int32,
            field("value", 2, Type::String, Optional),
        ),
        map_entry(
            "NodesEntry",
            Type::String,
            message_field("value", 2, NODE, Optional),
        ),
    ];
    scalars
}

fn test_set() -> FileDescriptorSet {
    use Label::{Optional, Repeated};
    let node = message(
        "Node",
        vec![
            message_field("child", 1, NODE, Optional),
            field("name", 2, Type::String, Optional),
            message_field("children", 3, NODE, Repeated),
        ],
    );
    let holder = message(
        "Holder",
        vec![
            message_field("port", 1, INT_OR_STRING, Optional),
            message_field("amount", 2, QUANTITY, Optional),
        ],
    );
    let int_or_string = message(
        "IntOrString",
        vec![
            field("type", 1, Type::Int64, Optional),
            field("intVal", 2, Type::Int32, Optional),
            field("strVal", 3, Type::String, Optional),
        ],
    );
    let quantity = message("Quantity", vec![field("string", 1, Type::String, Optional)]);
    FileDescriptorSet {
        file: vec![
            file("test.proto", "test", vec![scalars_message(), node, holder]),
            file(
                "intstr.proto",
                package_of(INT_OR_STRING),
                vec![int_or_string],
            ),
            file("quantity.proto", package_of(QUANTITY), vec![quantity]),
        ],
    }
}

fn package_of(full_name: &str) -> &str {
    full_name
        .rsplit_once('.')
        .map_or("", |(package, _)| package)
}

/// The hand-built schema (also used by the property tests).
pub(super) fn test_schema() -> Schema {
    let bytes = test_set().encode_to_vec();
    Schema::from_descriptor_sets(&[bytes.as_slice()]).expect("the test schema loads")
}

fn encode(message: &str, value: Value) -> Vec<u8> {
    test_schema().encode(message, &value).expect("encodes")
}

fn decode(message: &str, bytes: &[u8]) -> Value {
    test_schema().decode(message, bytes).expect("decodes")
}

#[test]
fn every_scalar_round_trips() {
    let value = json!({
        "i32": -5, "i64": -9_000_000_000_i64, "u32": 4_000_000_000_u32,
        "u64": u64::MAX, "s32": -3, "s64": i64::MIN, "b": false, "f32": 7, "f64": 8,
        "sf32": -9, "sf64": -10, "fl": 1.5, "db": -2.25, "s": "héllo", "by": "AQL/",
        "ri": [1, -1, 0], "rs": ["a", ""], "im": {"7": "seven"},
        "node": {"name": "n", "child": {"name": "c"}, "children": [{}, {"name": "x"}]},
        "nodes": {"a": {"name": "a"}}
    });
    let bytes = encode(SCALARS, value.clone());
    assert_eq!(decode(SCALARS, &bytes), value);
}

#[test]
fn scalars_have_their_wire_bytes() {
    let cases: Vec<(Value, Vec<u8>)> = vec![
        // Negative int32 is sign-extended to ten bytes.
        (
            json!({"i32": -1}),
            [&[0x08_u8][..], &[0xff; 9], &[0x01]].concat(),
        ),
        (json!({"i64": 300}), vec![0x10, 0xac, 0x02]),
        (json!({"u32": 0}), vec![0x18, 0x00]),
        (json!({"s32": -1}), vec![0x28, 0x01]),
        (json!({"s64": 1}), vec![0x30, 0x02]),
        (json!({"b": true}), vec![0x38, 0x01]),
        (json!({"f32": 1}), vec![0x45, 0x01, 0, 0, 0]),
        (json!({"f64": 2}), vec![0x49, 0x02, 0, 0, 0, 0, 0, 0, 0]),
        (json!({"sf32": -1}), vec![0x55, 0xff, 0xff, 0xff, 0xff]),
        (json!({"fl": 1.0}), vec![0x65, 0x00, 0x00, 0x80, 0x3f]),
        (json!({"db": 1.0}), vec![0x69, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]),
        (json!({"s": "hi"}), vec![0x72, 0x02, b'h', b'i']),
        (json!({"by": "AQL/"}), vec![0x7a, 0x03, 0x01, 0x02, 0xff]),
        // Repeated scalars are written unpacked (proto2), empty values included.
        (
            json!({"ri": [1, 2]}),
            vec![0x80, 0x01, 0x01, 0x80, 0x01, 0x02],
        ),
        (json!({"rs": [""]}), vec![0x8a, 0x01, 0x00]),
        // Null and absent fields are not written; apiVersion and kind are not fields.
        (json!({"s": null, "apiVersion": "v1", "kind": "K"}), vec![]),
        // Fields come out in number order whatever the JSON order.
        (json!({"b": true, "i32": 1}), vec![0x08, 0x01, 0x38, 0x01]),
    ];
    for (value, expected) in cases {
        assert_eq!(encode(SCALARS, value.clone()), expected, "{value}");
    }
}

#[test]
fn packed_lists_are_read_too() {
    let packed = [0x82, 0x01, 0x04, 0x01, 0x02, 0xac, 0x02];
    assert_eq!(decode(SCALARS, &packed), json!({"ri": [1, 2, 300]}));
    // Packed and unpacked runs of one field concatenate.
    let mixed = [0x80, 0x01, 0x05, 0x82, 0x01, 0x01, 0x06];
    assert_eq!(decode(SCALARS, &mixed), json!({"ri": [5, 6]}));
}

#[test]
fn maps_are_sorted_and_write_key_and_value() {
    let bytes = encode(SCALARS, json!({"im": {"10": "a", "9": "", "-1": "c"}}));
    let expected = [
        &[0x92_u8, 0x01, 0x0e, 0x08][..],
        &[0xff; 9],
        &[0x01, 0x12, 0x01, b'c'],
        &[0x92, 0x01, 0x04, 0x08, 0x09, 0x12, 0x00],
        &[0x92, 0x01, 0x05, 0x08, 0x0a, 0x12, 0x01, b'a'],
    ]
    .concat();
    assert_eq!(bytes, expected);
    let decoded = decode(SCALARS, &bytes);
    let keys: Vec<&String> = decoded["im"].as_object().expect("a map").keys().collect();
    assert_eq!(keys, ["-1", "9", "10"]);

    let strings = encode(SCALARS, json!({"nodes": {"b": {}, "a": null}}));
    let entry_a = [0xa2, 0x01, 0x05, 0x0a, 0x01, b'a', 0x12, 0x00];
    let entry_b = [0xa2, 0x01, 0x05, 0x0a, 0x01, b'b', 0x12, 0x00];
    assert_eq!(strings, [entry_a, entry_b].concat());
}

#[test]
fn map_entries_missing_key_or_value_are_zero() {
    assert_eq!(
        decode(SCALARS, &[0x92, 0x01, 0x00]),
        json!({"im": {"0": ""}})
    );
    assert_eq!(
        decode(SCALARS, &[0xa2, 0x01, 0x02, 0x0a, 0x00]),
        json!({"nodes": {"": {}}})
    );
    assert_eq!(
        encode(SCALARS, json!({"im": {"1": null}})),
        [0x92, 0x01, 0x04, 0x08, 0x01, 0x12, 0x00]
    );
}

#[test]
fn zero_values_on_the_wire_appear_in_json() {
    let bytes = [0x08, 0x00, 0x38, 0x00, 0x72, 0x00, 0x9a, 0x01, 0x00];
    assert_eq!(
        decode(SCALARS, &bytes),
        json!({"i32": 0, "b": false, "s": "", "node": {}})
    );
}

#[test]
fn unknown_fields_are_skipped() {
    let bytes = [
        0x98, 0x06, 0x05, // field 99, varint
        0x99, 0x06, 1, 2, 3, 4, 5, 6, 7, 8, // field 99, 64-bit
        0x9a, 0x06, 0x02, 0xff, 0xff, // field 99, length-delimited
        0x9b, 0x06, 0x08, 0x01, 0x9c, 0x06, // field 99, a group holding field 1
        0x9d, 0x06, 1, 2, 3, 4, // field 99, 32-bit
        0x72, 0x01, b'k', // field 14: kept
    ];
    assert_eq!(decode(SCALARS, &bytes), json!({"s": "k"}));
}

#[test]
fn invalid_utf8_becomes_replacement_characters() {
    assert_eq!(
        decode(SCALARS, &[0x72, 0x02, b'a', 0xff]),
        json!({"s": "a\u{fffd}"})
    );
}

#[test]
fn special_types_by_name() {
    let bytes = encode(HOLDER, json!({"port": 8080, "amount": "1Gi"}));
    let expected = [
        &[0x0a_u8, 0x07, 0x08, 0x00, 0x10, 0x90, 0x3f, 0x1a, 0x00][..],
        &[0x12, 0x05, 0x0a, 0x03, b'1', b'G', b'i'],
    ]
    .concat();
    assert_eq!(bytes, expected);
    assert_eq!(
        decode(HOLDER, &bytes),
        json!({"port": 8080, "amount": "1Gi"})
    );

    let named = encode(HOLDER, json!({"port": "http", "amount": 2}));
    let port = [
        0x0a, 0x0a, 0x08, 0x01, 0x10, 0x00, 0x1a, 0x04, b'h', b't', b't', b'p',
    ];
    let amount = [0x12, 0x03, 0x0a, 0x01, b'2'];
    assert_eq!(named, [&port[..], &amount[..]].concat());
    assert_eq!(
        decode(HOLDER, &named),
        json!({"port": "http", "amount": "2"})
    );
    let impossible = [0x0a, 0x02, 0x08, 0x02];
    assert!(test_schema().decode(HOLDER, &impossible).is_err());
}

fn nested_nodes(depth: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    for _ in 0..depth {
        let mut outer = vec![0x0a];
        prost::encoding::encode_varint(bytes.len() as u64, &mut outer);
        outer.extend_from_slice(&bytes);
        bytes = outer;
    }
    bytes
}

fn nested_json(depth: usize) -> Value {
    let mut value = json!({"name": "leaf"});
    for _ in 0..depth {
        value = json!({ "child": value });
    }
    value
}

#[test]
fn nesting_is_limited_both_ways() {
    let schema = test_schema();
    assert!(schema.decode(NODE, &nested_nodes(MAX_DEPTH)).is_ok());
    let err = schema
        .decode(NODE, &nested_nodes(MAX_DEPTH + 1))
        .expect_err("too deep");
    assert!(err.to_string().contains("nested deeper than 64"), "{err}");
    assert!(schema.decode(NODE, &nested_nodes(1_000)).is_err());

    assert!(schema.encode(NODE, &nested_json(MAX_DEPTH)).is_ok());
    let err = schema
        .encode(NODE, &nested_json(MAX_DEPTH + 1))
        .expect_err("too deep");
    assert!(err.to_string().contains("nested deeper than 64"), "{err}");
}

#[test]
fn hostile_bytes_are_errors() {
    let schema = test_schema();
    let cases: &[(&[u8], &str)] = &[
        (&[0x08], "invalid varint"),
        (&[0x08, 0x80], "invalid varint"),
        (&[0x72, 0x05, b'a'], "length 5 exceeds the 1 bytes left"),
        (&[0x72, 0xff, 0xff, 0xff, 0xff, 0x0f], "exceeds"),
        (
            &[0x0d, 1, 2, 3, 4],
            "wrong wire type 32-bit (expected varint)",
        ),
        (&[0x0a, 0x00], "wrong wire type"),
        (&[0x72, 0x01], "exceeds"),
        (&[0x9a, 0x01, 0x01, 0x08], "invalid varint"),
        (&[0x0c], "unexpected end of group"),
        (&[0x0b, 0x08, 0x01], "invalid field key"),
        (&[0x00], "invalid field key"),
        (&[0x0f], "invalid field key"),
        (&[0x82, 0x01, 0x01, 0x80], "invalid varint"),
        (&[0xff; 12], "invalid field key"),
    ];
    for (bytes, expected) in cases {
        let err = schema.decode(SCALARS, bytes).expect_err("hostile input");
        assert!(
            matches!(err, ProtoError::Decode { .. }),
            "{bytes:?}: {err:?}"
        );
        assert!(err.to_string().contains(expected), "{bytes:?}: {err}");
    }
    let err = schema
        .decode(SCALARS, &[0x9a, 0x01, 0x02, 0x08, 0x01])
        .expect_err("a message sent as a varint");
    assert_eq!(
        err.to_string(),
        "unable to decode protobuf at node.child: \
         wrong wire type varint (expected length-delimited)"
    );
}

#[test]
fn json_of_the_wrong_shape_is_an_error() {
    let schema = test_schema();
    let cases = [
        (
            json!({"i32": "5"}),
            "i32",
            "expected an integer (int32), found string",
        ),
        (json!({"i32": 2_147_483_648_i64}), "i32", "out of range"),
        (json!({"u32": -1}), "u32", "out of range"),
        (json!({"i64": 1.5}), "i64", "found a non-integer number"),
        (json!({"fl": 1e300}), "fl", "out of range for float"),
        (json!({"b": 1}), "b", "expected a boolean"),
        (json!({"s": 1}), "s", "expected a string"),
        (json!({"by": "not base64!"}), "by", "invalid base64"),
        (json!({"ri": 1}), "ri", "expected an array"),
        (json!({"ri": [1, "x"]}), "ri[1]", "expected an integer"),
        (json!({"im": {"x": "y"}}), "im", "is not a int32"),
        (json!({"im": []}), "im", "expected an object"),
        (
            json!({"node": {"child": 5}}),
            "node.child",
            "expected an object",
        ),
        (
            json!({"nodes": {"k": {"name": 1}}}),
            "nodes[k].name",
            "expected a string",
        ),
    ];
    for (value, path, reason) in cases {
        let err = schema.encode(SCALARS, &value).expect_err("wrong shape");
        let ProtoError::Encode {
            path: got,
            reason: why,
        } = &err
        else {
            panic!("{value}: {err:?}");
        };
        assert_eq!(got, path, "{value}");
        assert!(why.contains(reason), "{value}: {why}");
    }
    assert!(schema.encode(SCALARS, &json!([])).is_err());
    assert!(matches!(
        schema.encode("test.Missing", &json!({})),
        Err(ProtoError::UnknownMessage(_))
    ));
}

#[test]
fn descriptor_sets_merge_and_skip_repeated_files() {
    let bytes = test_set().encode_to_vec();
    let schema = Schema::from_descriptor_sets(&[bytes.as_slice(), bytes.as_slice()])
        .expect("duplicates skipped");
    assert!(schema.has_message(SCALARS));
    assert!(schema.has_message("test.Scalars.ImEntry"));
    assert!(!schema.has_message(".test.Scalars"));

    let mut renamed = test_set();
    renamed.file[0].name = Some("other.proto".to_owned());
    let other = renamed.encode_to_vec();
    let err = Schema::from_descriptor_sets(&[bytes.as_slice(), other.as_slice()])
        .expect_err("defined twice");
    assert!(matches!(err, ProtoError::Descriptor(_)), "{err:?}");
    let garbage: &[u8] = &[0xff, 0xff];
    assert!(Schema::from_descriptor_sets(&[garbage]).is_err());
}
