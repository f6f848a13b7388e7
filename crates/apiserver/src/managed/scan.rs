//! Where the fields of a JSON object and the items of a list begin and end in its text,
//! found without building any value.
//!
//! The field-set comparison of an update reads the old and the new object's text level by
//! level, and passes over everything that is the same on both sides. serde_json can pass over
//! a value only by parsing it (its `RawValue`), which was most of that comparison's cost on a
//! stream of a hundred tags. Here strings are skipped with `memchr` and containers by counting
//! brackets. That is all the syntax a split needs; the values that the comparison does read
//! (a leaf, a list item's key) are parsed by serde_json, which checks them.
//!
//! The comparison descends: the object's level passes over `spec`, `spec`'s level over its
//! tags, the tags' level splits them into items. A [`Tape`] of each text remembers where the
//! containers a scan passed end, so that each level below jumps over them: each text is
//! scanned once, as far as its first level needs.

use std::borrow::Cow;
use std::cell::RefCell;

/// The text ended, or held something no JSON value can, where a value or a separator was due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed JSON at byte {at}")]
pub(super) struct Malformed {
    at: usize,
}

/// Where the containers of one text that a scan has passed end: (opening, one past closing)
/// byte offsets, in the order of their openings. A scan records as it goes when it starts past
/// everything recorded so far, which the comparison's first scan of a text does.
pub(super) struct Tape<'j> {
    text: &'j str,
    spans: RefCell<Vec<(usize, usize)>>,
    /// Where the last recorded scan ended.
    recorded_to: std::cell::Cell<usize>,
}

impl<'j> Tape<'j> {
    pub(super) fn new(text: &'j str) -> Self {
        Tape {
            text,
            spans: RefCell::new(Vec::new()),
            recorded_to: std::cell::Cell::new(0),
        }
    }

    /// Where `part` starts in this tape's text; None when it is not a slice of it.
    fn offset_of(&self, part: &str) -> Option<usize> {
        let (start, root) = (part.as_ptr() as usize, self.text.as_ptr() as usize);
        let offset = start.checked_sub(root)?;
        (offset + part.len() <= self.text.len()).then_some(offset)
    }

    /// One past the close of the container opened at `open`, if a scan recorded it.
    fn end_of(&self, open: usize) -> Option<usize> {
        let spans = self.spans.borrow();
        let i = spans.binary_search_by_key(&open, |(o, _)| *o).ok()?;
        Some(spans[i].1)
    }
}

/// The tapes of the texts being compared (two objects, or one managedFields entry's fieldsV1).
/// A text that is a slice of none of them is scanned without one.
#[derive(Default)]
pub(super) struct Tapes<'j>(Vec<Tape<'j>>);

impl<'j> Tapes<'j> {
    pub(super) fn of(texts: &[&'j str]) -> Self {
        Tapes(texts.iter().map(|t| Tape::new(t)).collect())
    }

    /// The tape `part` is a slice of, with where it starts in that tape's text.
    fn locate(&self, part: &str) -> Option<Memo<'_, 'j>> {
        self.0
            .iter()
            .find_map(|tape| tape.offset_of(part).map(|base| Memo { tape, base }))
    }
}

/// A tape, and where the text being scanned starts in the tape's text.
#[derive(Clone, Copy)]
struct Memo<'t, 'j> {
    tape: &'t Tape<'j>,
    base: usize,
}

/// An object's fields as read from the start of its text: each name (borrowed unless it holds
/// escapes) with its value's text.
pub(super) struct Fields<'j> {
    pub(super) fields: Vec<(Cow<'j, str>, &'j str)>,
    /// How many bytes of the text were left unread when reading stopped early (see
    /// [`object_fields`]); None when every field was read.
    pub(super) unread: Option<usize>,
}

/// The fields of the object `text` holds, read from its start until a field's value leaves at
/// most `tail` bytes of the text after it (0 reads them all, as the object's close is left).
/// An error when the text read is no object.
pub(super) fn object_fields<'j>(
    text: &'j str,
    tail: usize,
    tapes: &Tapes<'_>,
) -> Result<Fields<'j>, Malformed> {
    let memo = tapes.locate(text);
    let bytes = text.as_bytes();
    let mut at = expect(bytes, skip_space(bytes, 0), b'{')?;
    let mut fields = Vec::new();
    at = skip_space(bytes, at);
    if bytes.get(at) == Some(&b'}') {
        return finish(bytes, at + 1).map(|()| Fields {
            fields,
            unread: None,
        });
    }
    loop {
        let name_end = string_end(bytes, at)?;
        let name = field_name(text, at, name_end)?;
        at = skip_space(bytes, expect(bytes, skip_space(bytes, name_end), b':')?);
        let value_end = value_end(bytes, at, memo)?;
        fields.push((name, slice(text, at, value_end)?));
        // The object's close at least is left; a text that ends here is cut short.
        let unread = bytes.len() - value_end;
        if unread == 0 {
            return Err(Malformed { at: value_end });
        }
        if unread <= tail {
            return Ok(Fields {
                fields,
                unread: Some(unread),
            });
        }
        at = skip_space(bytes, value_end);
        match bytes.get(at) {
            Some(b',') => at = skip_space(bytes, at + 1),
            Some(b'}') => break,
            _ => return Err(Malformed { at }),
        }
    }
    finish(bytes, at + 1)?;
    Ok(Fields {
        fields,
        unread: None,
    })
}

/// The items' texts of the list `text` holds; an error when it is no list.
pub(super) fn list_items<'j>(text: &'j str, tapes: &Tapes<'_>) -> Result<Vec<&'j str>, Malformed> {
    let memo = tapes.locate(text);
    let bytes = text.as_bytes();
    let mut at = skip_space(bytes, expect(bytes, skip_space(bytes, 0), b'[')?);
    let mut items = Vec::new();
    if bytes.get(at) == Some(&b']') {
        finish(bytes, at + 1)?;
        return Ok(items);
    }
    loop {
        let end = value_end(bytes, at, memo)?;
        items.push(slice(text, at, end)?);
        at = skip_space(bytes, end);
        match bytes.get(at) {
            Some(b',') => at = skip_space(bytes, at + 1),
            Some(b']') => break,
            _ => return Err(Malformed { at }),
        }
    }
    finish(bytes, at + 1)?;
    Ok(items)
}

/// The text of the first field `name` of the object `text` holds, the fields after it not
/// looked at: the texts compared here come from one serializer, which writes a name once per
/// object (a map parse would keep the last of repeated names). None when the object lacks
/// it; an error when the text is no object.
pub(super) fn field_text<'j>(
    text: &'j str,
    name: &str,
    tapes: &Tapes<'_>,
) -> Result<Option<&'j str>, Malformed> {
    let memo = tapes.locate(text);
    let bytes = text.as_bytes();
    let mut at = skip_space(bytes, expect(bytes, skip_space(bytes, 0), b'{')?);
    if bytes.get(at) == Some(&b'}') {
        return Ok(None);
    }
    loop {
        let name_end = string_end(bytes, at)?;
        let found = field_name(text, at, name_end)? == name;
        at = skip_space(bytes, expect(bytes, skip_space(bytes, name_end), b':')?);
        let value_end = value_end(bytes, at, memo)?;
        if found {
            return slice(text, at, value_end).map(Some);
        }
        at = skip_space(bytes, value_end);
        match bytes.get(at) {
            Some(b',') => at = skip_space(bytes, at + 1),
            Some(b'}') => return Ok(None),
            _ => return Err(Malformed { at }),
        }
    }
}

/// A field's name from its quoted text at `start..end`, unescaped when it holds escapes.
fn field_name(text: &str, start: usize, end: usize) -> Result<Cow<'_, str>, Malformed> {
    let quoted = slice(text, start, end)?;
    let inner = &quoted[1..quoted.len() - 1];
    if !inner.contains('\\') {
        return Ok(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(quoted)
        .map(Cow::Owned)
        .map_err(|_| Malformed { at: start })
}

/// Where the value starting at `at` ends (one past its last byte).
fn value_end(bytes: &[u8], at: usize, memo: Option<Memo<'_, '_>>) -> Result<usize, Malformed> {
    match bytes.get(at) {
        Some(b'"') => string_end(bytes, at),
        Some(b'{' | b'[') => container_end(bytes, at, memo),
        Some(b) if is_scalar_byte(*b) => Ok(scalar_end(bytes, at)),
        _ => Err(Malformed { at }),
    }
}

/// One past the closing quote of the string whose opening quote is at `at`.
fn string_end(bytes: &[u8], at: usize) -> Result<usize, Malformed> {
    if bytes.get(at) != Some(&b'"') {
        return Err(Malformed { at });
    }
    // Most strings of an object (names, kinds, tags) are short: byte by byte they end sooner
    // than memchr is set up; a long one is left to memchr.
    const SHORT: usize = 32;
    let mut from = at + 1;
    let short_end = (from + SHORT).min(bytes.len());
    while from < short_end {
        match bytes[from] {
            b'"' => return Ok(from + 1),
            b'\\' => from += 2,
            _ => from += 1,
        }
    }
    loop {
        let rest = bytes.get(from..).ok_or(Malformed { at })?;
        match memchr::memchr2(b'"', b'\\', rest) {
            Some(i) if rest[i] == b'"' => return Ok(from + i + 1),
            // An escape: the byte after the backslash is never the string's end.
            Some(i) => from += i + 2,
            None => return Err(Malformed { at }),
        }
    }
}

/// One past the bracket that closes the object or list opened at `at`: from the tape when a
/// scan passed it, else counted and recorded. Brackets are counted, not matched by kind, and
/// scalars are skipped, not validated: the texts compared are serde_json's renderings, or
/// kept JSON that debug builds check against one, and a malformed value is only caught when
/// it is read as a value (serde_json's parse), not when it is skipped.
fn container_end(bytes: &[u8], at: usize, memo: Option<Memo<'_, '_>>) -> Result<usize, Malformed> {
    if let Some(end) = memo.and_then(|m| m.tape.end_of(m.base + at)) {
        return Ok(end - memo.map_or(0, |m| m.base));
    }
    let mut recorder = memo.and_then(|m| Recorder::after_all(m, at));
    let mut depth = 0usize;
    let mut i = at;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                i = string_end(bytes, i)?;
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                if let Some(r) = recorder.as_mut() {
                    r.opened(i);
                }
            }
            b'}' | b']' => {
                depth -= 1;
                if let Some(r) = recorder.as_mut() {
                    r.closed(i + 1);
                }
                if depth == 0 {
                    if let Some(r) = recorder {
                        r.finished(i + 1);
                    }
                    return Ok(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(Malformed { at })
}

/// Records the containers of one scan on a tape; what a scan that fails recorded is taken
/// back.
struct Recorder<'t> {
    memo: Memo<'t, 't>,
    spans: std::cell::RefMut<'t, Vec<(usize, usize)>>,
    recorded_before: usize,
    /// The spans of the containers open at this point of the scan.
    open: Vec<usize>,
    done: bool,
}

impl<'t> Recorder<'t> {
    /// A recorder for a scan from `at`, when that is past every scan recorded (so the spans
    /// stay in order); a scan that is not records nothing.
    fn after_all(memo: Memo<'t, 't>, at: usize) -> Option<Self> {
        if memo.base + at < memo.tape.recorded_to.get() {
            return None;
        }
        let spans = memo.tape.spans.try_borrow_mut().ok()?;
        Some(Recorder {
            memo,
            recorded_before: spans.len(),
            spans,
            open: Vec::new(),
            done: false,
        })
    }

    fn opened(&mut self, at: usize) {
        self.open.push(self.spans.len());
        self.spans.push((self.memo.base + at, 0));
    }

    fn closed(&mut self, end: usize) {
        if let Some(i) = self.open.pop() {
            self.spans[i].1 = self.memo.base + end;
        }
    }

    fn finished(mut self, end: usize) {
        self.memo.tape.recorded_to.set(self.memo.base + end);
        self.done = true;
    }
}

impl Drop for Recorder<'_> {
    fn drop(&mut self) {
        if !self.done {
            let before = self.recorded_before;
            self.spans.truncate(before);
        }
    }
}

/// The bytes a number, `true`, `false` or `null` is made of.
fn is_scalar_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.')
}

fn scalar_end(bytes: &[u8], at: usize) -> usize {
    let len = bytes[at..]
        .iter()
        .position(|b| !is_scalar_byte(*b))
        .unwrap_or(bytes.len() - at);
    at + len
}

fn skip_space(bytes: &[u8], at: usize) -> usize {
    let len = bytes
        .get(at..)
        .and_then(|rest| rest.iter().position(|b| !b.is_ascii_whitespace()));
    len.map_or(bytes.len(), |len| at + len)
}

/// One past `at`, where `wanted` must be.
fn expect(bytes: &[u8], at: usize, wanted: u8) -> Result<usize, Malformed> {
    match bytes.get(at) {
        Some(b) if *b == wanted => Ok(at + 1),
        _ => Err(Malformed { at }),
    }
}

/// Nothing but whitespace may follow the value.
fn finish(bytes: &[u8], at: usize) -> Result<(), Malformed> {
    let end = skip_space(bytes, at);
    if end == bytes.len() {
        Ok(())
    } else {
        Err(Malformed { at: end })
    }
}

/// `text[start..end]`, where both ends are at ASCII bytes the scan found (so on character
/// boundaries).
fn slice(text: &str, start: usize, end: usize) -> Result<&str, Malformed> {
    text.get(start..end).ok_or(Malformed { at: start })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: Tapes<'static> = Tapes(Vec::new());

    fn names_and_texts<'j>(fields: &'j Fields<'_>) -> Vec<(&'j str, &'j str)> {
        fields
            .fields
            .iter()
            .map(|(n, v)| (n.as_ref(), *v))
            .collect()
    }

    #[test]
    fn an_object_splits_into_its_fields_texts() {
        let text =
            r#"{"a":1,"b":"x,}]\"y","c":{"d":[1,{"e":"]"}]},"f":[],"g":true,"h":null,"i":-1.5e+3}"#;
        let read = object_fields(text, 0, &NONE).expect("object");
        assert_eq!(
            names_and_texts(&read),
            vec![
                ("a", "1"),
                ("b", r#""x,}]\"y""#),
                ("c", r#"{"d":[1,{"e":"]"}]}"#),
                ("f", "[]"),
                ("g", "true"),
                ("h", "null"),
                ("i", "-1.5e+3"),
            ]
        );
        assert_eq!(read.unread, None);
    }

    /// Strings are read byte by byte for their first 32 bytes and by memchr after: escapes on
    /// either side of that line, and across it, end no string early.
    #[test]
    fn escapes_in_long_strings_end_no_string_early() {
        for at in [0, 1, 29, 30, 31, 32, 33, 60] {
            for escape in [r#"\""#, r"\\", r"\n"] {
                let inner = format!("{}{escape}{}", "x".repeat(at), "y".repeat(40));
                let text = format!(r#"{{"s":"{inner}","t":1}}"#);
                let read = object_fields(&text, 0, &NONE).expect("object");
                assert_eq!(read.fields[0].1, format!("\"{inner}\""), "{text}");
                assert_eq!(read.fields[1].1, "1");
            }
        }
        let unterminated = format!(r#"{{"s":"{}"#, "x".repeat(100));
        assert!(object_fields(&unterminated, 0, &NONE).is_err());
        let ends_escaped = format!(r#"{{"s":"{}\"#, "x".repeat(31));
        assert!(object_fields(&ends_escaped, 0, &NONE).is_err());
    }

    #[test]
    fn whitespace_between_tokens_is_passed_over() {
        let text = " { \"a\" : [ 1 , 2 ] ,\n\t\"b\" : { } } \n";
        let read = object_fields(text, 0, &NONE).expect("object");
        assert_eq!(
            names_and_texts(&read),
            vec![("a", "[ 1 , 2 ]"), ("b", "{ }")]
        );
        assert_eq!(
            list_items("[ 1 , \"2\" ,{}]", &NONE).expect("list"),
            ["1", "\"2\"", "{}"]
        );
    }

    #[test]
    fn escaped_names_are_unescaped_and_plain_ones_borrowed() {
        let text = r#"{"k:{\"name\":\"a\"}":{},"plain":{}}"#;
        let read = object_fields(text, 0, &NONE).expect("object");
        assert_eq!(read.fields[0].0, r#"k:{"name":"a"}"#);
        assert!(matches!(read.fields[0].0, Cow::Owned(_)));
        assert!(matches!(read.fields[1].0, Cow::Borrowed("plain")));
    }

    #[test]
    fn reading_stops_at_the_first_field_that_leaves_no_more_than_the_tail() {
        let text = r#"{"a":1,"b":22,"c":333}"#;
        // After "b"'s value: `,"c":333}` is 9 bytes.
        let read = object_fields(text, 9, &NONE).expect("object");
        assert_eq!(names_and_texts(&read), vec![("a", "1"), ("b", "22")]);
        assert_eq!(read.unread, Some(9));
        let read = object_fields(text, 8, &NONE).expect("object");
        assert_eq!(read.fields.len(), 3);
        assert_eq!(read.unread, Some(1));
        assert_eq!(object_fields(text, 0, &NONE).expect("object").unread, None);
    }

    #[test]
    fn empty_containers_hold_nothing() {
        assert!(object_fields("{}", 0, &NONE)
            .expect("object")
            .fields
            .is_empty());
        assert!(object_fields(" { } ", 0, &NONE)
            .expect("object")
            .fields
            .is_empty());
        assert!(list_items("[]", &NONE).expect("list").is_empty());
        assert_eq!(field_text("{}", "a", &NONE), Ok(None));
    }

    #[test]
    fn a_field_is_found_without_reading_past_it() {
        // What follows the field is never looked at, so even a broken rest does not matter.
        assert_eq!(
            field_text(r#"{"name":"t1","from":{"#, "name", &NONE),
            Ok(Some("\"t1\""))
        );
        assert_eq!(
            field_text(r#"{"a":{"name":1},"name":[2]}"#, "name", &NONE),
            Ok(Some("[2]"))
        );
        assert_eq!(field_text(r#"{"a":1}"#, "name", &NONE), Ok(None));
        assert_eq!(
            field_text(r#"{"n\u0061me":3}"#, "name", &NONE),
            Ok(Some("3"))
        );
    }

    #[test]
    fn texts_that_are_not_the_container_wanted_are_refused() {
        assert!(object_fields("[1]", 0, &NONE).is_err());
        assert!(object_fields("\"a\"", 0, &NONE).is_err());
        assert!(list_items("{}", &NONE).is_err());
        assert!(field_text("[]", "a", &NONE).is_err());
    }

    #[test]
    fn broken_texts_are_refused_not_misread() {
        let broken = [
            "",
            "{",
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{"a":1"#,
            r#"{"a":1,}"#,
            r#"{"a":1 "b":2}"#,
            r#"{"a":"unterminated}"#,
            r#"{"a":"ends in an escape\"}"#,
            r#"{"a":{"b":1}"#,
            r#"{a:1}"#,
            r#"{"a":1} trailing"#,
            r#"{"a":1}}"#,
            r#"{"a":@}"#,
        ];
        for text in broken {
            assert!(object_fields(text, 0, &NONE).is_err(), "{text:?} was read");
        }
        for text in ["[", "[1", "[1,]", "[1 2]", "[1]]", "[1] x", "[\"a]"] {
            assert!(list_items(text, &NONE).is_err(), "{text:?} was read");
        }
        assert!(field_text(r#"{"a":1 "name":2}"#, "name", &NONE).is_err());
        assert!(field_text(r#"{"a":"#, "name", &NONE).is_err());
    }

    /// The first read of a text records its containers; the levels below are then read from
    /// the tape, and read the same as without it. A text of no tape is read without one.
    #[test]
    fn levels_below_a_read_are_read_from_its_tape() {
        let text = r#"{"metadata":{"name":"s"},"spec":{"tags":[{"name":"a","from":{"k":"[\"x"}},{"name":"b"}]},"status":{}}"#;
        let other = text.to_string();
        let tapes = Tapes::of(&[text]);
        let top = object_fields(text, 0, &tapes).expect("object");
        let tape = &tapes.0[0];
        let spans = tape.spans.borrow().clone();
        let opened = |part: &str| tape.offset_of(part).expect("a slice of the text");
        // Every container below the top, in the order of their openings, each with its end.
        assert_eq!(spans.len(), 7, "{spans:?}");
        assert!(spans.windows(2).all(|w| w[0].0 < w[1].0));
        let spec = top.fields[1].1;
        assert_eq!(tape.end_of(opened(spec)), Some(opened(spec) + spec.len()));
        assert_eq!(tape.offset_of(&other), None);

        let spec_fields = object_fields(spec, 0, &tapes).expect("spec");
        let items = list_items(spec_fields.fields[0].1, &tapes).expect("tags");
        assert_eq!(
            items,
            [r#"{"name":"a","from":{"k":"[\"x"}}"#, r#"{"name":"b"}"#]
        );
        assert_eq!(
            field_text(items[0], "from", &tapes),
            Ok(Some(r#"{"k":"[\"x"}"#))
        );
        // Nothing was scanned twice, so nothing more was recorded.
        assert_eq!(*tape.spans.borrow(), spans);

        let untaped = object_fields(&other, 0, &tapes).expect("object");
        let untaped_spec = object_fields(untaped.fields[1].1, 0, &NONE).expect("spec");
        assert_eq!(untaped_spec.fields[0].1, spec_fields.fields[0].1);
    }

    /// A container whose scan fails takes back what it recorded, and a scan that starts before
    /// the end of what was recorded records nothing: the tape stays in order and holds only
    /// containers that end, where they end.
    #[test]
    fn a_tape_holds_only_whole_containers_in_order() {
        let text = r#"{"a":[{"b":1},{"c":[2]}],"d":{"e":{}}}"#;
        let at = |part: &str| text.find(part).expect("part of the text");
        let span = |part: &str| (at(part), at(part) + part.len());
        let tapes = Tapes::of(&[text]);
        let tape = &tapes.0[0];
        let cut = &text[at("[")..at("2]")];
        assert!(list_items(cut, &tapes).is_err());
        assert_eq!(*tape.spans.borrow(), [span(r#"{"b":1}"#)]);

        let read = object_fields(text, 0, &tapes).expect("object");
        assert_eq!(read.fields[0].1, r#"[{"b":1},{"c":[2]}]"#);
        // "a" starts before what was recorded ends, so only "d" and what it holds are added.
        let e_value = (at("{}}}"), at("{}}}") + 2);
        assert_eq!(
            *tape.spans.borrow(),
            [span(r#"{"b":1}"#), span(r#"{"e":{}}"#), e_value]
        );
        let inner = &text[at(r#"{"c""#)..];
        assert_eq!(
            value_end(inner.as_bytes(), 0, tapes.locate(inner)),
            Ok(r#"{"c":[2]}"#.len())
        );
        assert_eq!(tape.spans.borrow().len(), 3);
    }

    /// Every split agrees with serde_json's, on a stream's worth of nesting, escapes and
    /// unicode, with a tape and without.
    #[test]
    fn splits_agree_with_serde_json() {
        let value = serde_json::json!({
            "metadata": {"name": "s", "labels": {"a/b": "c\"d", "é": "ü\\"}},
            "spec": {"tags": [
                {"name": "t0", "from": {"kind": "DockerImage", "name": "q.io/a:1"}, "generation": 3},
                {"name": "t\u{1}1", "annotations": {"x": "[{"}, "reference": true}
            ]},
            "status": {"tags": []}
        });
        let texts = [
            serde_json::to_string(&value).expect("compact"),
            serde_json::to_string_pretty(&value).expect("pretty"),
        ];
        for (text, taped) in texts.iter().flat_map(|t| [(t, false), (t, true)]) {
            let tapes = if taped {
                Tapes::of(&[text.as_str()])
            } else {
                Tapes::default()
            };
            let read = object_fields(text, 0, &tapes).expect("object");
            let theirs: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(text).expect("serde");
            assert_eq!(read.fields.len(), theirs.len());
            for (name, v) in &read.fields {
                let parsed: serde_json::Value = serde_json::from_str(v).expect("a value's text");
                assert_eq!(Some(&parsed), theirs.get(name.as_ref()), "{name}");
            }
            let spec = object_fields(read.fields[1].1, 0, &tapes).expect("spec");
            let items = list_items(spec.fields[0].1, &tapes).expect("tags");
            assert_eq!(items.len(), 2);
            for (item, theirs) in items
                .iter()
                .zip(value["spec"]["tags"].as_array().expect("tags"))
            {
                let parsed: serde_json::Value = serde_json::from_str(item).expect("item");
                assert_eq!(&parsed, theirs);
                let name = field_text(item, "name", &tapes)
                    .expect("item")
                    .expect("name");
                assert_eq!(
                    serde_json::from_str::<serde_json::Value>(name).expect("a name"),
                    theirs["name"]
                );
            }
        }
    }
}
