//! Label selectors with the grammar and error messages of Go's `labels.Parse` (spec §4.2):
//! `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, `k>N`, `k<N`, joined by `,`.

use std::collections::BTreeMap;

use crate::field::{FieldError, FieldPath};
use crate::validation::{label_value_errors, qualified_name_errors};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Sorted and deduplicated, as Go's string sets are.
    pub values: Vec<String>,
}

impl Requirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|k| labels.get(k).map(String::as_str))
    }

    /// Matches against labels given by a lookup function.
    pub fn matches_with<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        let value = label(&self.key);
        let contains = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => value.is_some_and(contains),
            Operator::NotEquals | Operator::NotIn => !value.is_some_and(contains),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(have), Some(want)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

/// A parsed label selector: all requirements must hold. Empty selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

impl LabelSelector {
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Matches against labels given by a lookup function.
    pub fn matches_with<'a>(&self, label: impl Fn(&str) -> Option<&'a str> + Copy) -> bool {
        self.requirements.iter().all(|r| r.matches_with(label))
    }

    /// The value an `=`/`==` requirement (or a one-value `in`) pins `key` to.
    pub fn required_value(&self, key: &str) -> Option<&str> {
        self.requirements.iter().find_map(|r| match r.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In
                if r.key == key && r.values.len() == 1 =>
            {
                r.values.first().map(String::as_str)
            }
            _ => None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    End,
    Error,
    Identifier,
    In,
    NotIn,
    Bang,
    NotEquals,
    OpenParen,
    CloseParen,
    Comma,
    Equals,
    DoubleEquals,
    GreaterThan,
    LessThan,
}

/// Go's parser has two contexts: in `Values`, the keywords `in` and `notin` are identifiers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Lexer<'a> {
    input: &'a [u8],
    pos: usize,
}

fn is_whitespace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn symbol(s: &[u8]) -> Option<Token> {
    Some(match s {
        b"!" => Token::Bang,
        b"!=" => Token::NotEquals,
        b"(" => Token::OpenParen,
        b")" => Token::CloseParen,
        b"," => Token::Comma,
        b"=" => Token::Equals,
        b"==" => Token::DoubleEquals,
        b">" => Token::GreaterThan,
        b"<" => Token::LessThan,
        _ => return None,
    })
}

impl Lexer<'_> {
    fn next(&mut self) -> (Token, String) {
        while self.pos < self.input.len() && is_whitespace(self.input[self.pos]) {
            self.pos += 1;
        }
        match self.input.get(self.pos) {
            None | Some(0) => (Token::End, String::new()),
            Some(&c) if is_special(c) => self.special(),
            Some(_) => self.identifier(),
        }
    }

    /// The longest run of special characters that is a symbol.
    fn special(&mut self) -> (Token, String) {
        let start = self.pos;
        let mut best: Option<(Token, usize)> = None;
        let mut end = start;
        while end < self.input.len() && is_special(self.input[end]) {
            end += 1;
            match symbol(&self.input[start..end]) {
                Some(tok) => best = Some((tok, end)),
                None if best.is_some() => break,
                None => {}
            }
        }
        match best {
            Some((tok, at)) => {
                self.pos = at;
                (
                    tok,
                    String::from_utf8_lossy(&self.input[start..at]).into_owned(),
                )
            }
            None => {
                self.pos = end;
                let buffer = String::from_utf8_lossy(&self.input[start..end]);
                (
                    Token::Error,
                    format!("error expected: keyword found '{buffer}'"),
                )
            }
        }
    }

    fn identifier(&mut self) -> (Token, String) {
        let start = self.pos;
        while self.pos < self.input.len()
            && !is_whitespace(self.input[self.pos])
            && !is_special(self.input[self.pos])
            && self.input[self.pos] != 0
        {
            self.pos += 1;
        }
        let word = String::from_utf8_lossy(&self.input[start..self.pos]).into_owned();
        let tok = match word.as_str() {
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Identifier,
        };
        (tok, word)
    }
}

struct Parser {
    tokens: Vec<(Token, String)>,
    pos: usize,
}

impl Parser {
    fn peek(&self, ctx: Context) -> (Token, String) {
        let (tok, lit) = self
            .tokens
            .get(self.pos)
            .cloned()
            .unwrap_or((Token::End, String::new()));
        (contextual(tok, ctx), lit)
    }

    fn consume(&mut self, ctx: Context) -> (Token, String) {
        let out = self.peek(ctx);
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        out
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            let (tok, lit) = self.peek(Context::Values);
            match tok {
                Token::Identifier | Token::Bang => {
                    let r = self
                        .requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(r);
                    let (t, l) = self.consume(Context::Values);
                    match t {
                        Token::End => return Ok(requirements),
                        Token::Comma => {
                            let (t2, l2) = self.peek(Context::Values);
                            if t2 != Token::Identifier && t2 != Token::Bang {
                                return Err(format!(
                                    "found '{l2}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => return Err(format!("found '{l}', expected: ',' or 'end of string'")),
                    }
                }
                Token::End => return Ok(requirements),
                _ => {
                    return Err(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    ))
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let (key, inferred) = self.key_and_inferred_operator()?;
        if let Some(op) = inferred {
            return new_requirement(key, op, Vec::new());
        }
        let op = self.operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.set_values()?,
            _ => self.exact_value()?,
        };
        new_requirement(key, op, values)
    }

    fn key_and_inferred_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let (mut tok, mut lit) = self.consume(Context::Values);
        let mut op = None;
        if tok == Token::Bang {
            op = Some(Operator::DoesNotExist);
            (tok, lit) = self.consume(Context::Values);
        }
        if tok != Token::Identifier {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        let key_errors = qualified_name_errors(&lit);
        if !key_errors.is_empty() {
            let path = FieldPath::new("key");
            let errors: Vec<FieldError> = key_errors
                .into_iter()
                .map(|m| FieldError::invalid(&path, lit.as_str(), m))
                .collect();
            return Err(join_errors(&errors));
        }
        let (next, _) = self.peek(Context::Values);
        if matches!(next, Token::End | Token::Comma) && op.is_none() {
            op = Some(Operator::Exists);
        }
        Ok((lit, op))
    }

    fn operator(&mut self) -> Result<Operator, String> {
        let (tok, lit) = self.consume(Context::KeyAndOperator);
        Ok(match tok {
            Token::In => Operator::In,
            Token::NotIn => Operator::NotIn,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::NotEquals => Operator::NotEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ))
            }
        })
    }

    fn set_values(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.consume(Context::Values);
        if tok != Token::OpenParen {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.peek(Context::Values);
        match tok {
            Token::Identifier | Token::Comma => {
                let values = self.identifier_list()?;
                let (tok, _) = self.consume(Context::Values);
                if tok != Token::CloseParen {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(values)
            }
            Token::CloseParen => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn identifier_list(&mut self) -> Result<Vec<String>, String> {
        let mut values = Vec::new();
        loop {
            let (tok, lit) = self.consume(Context::Values);
            match tok {
                Token::Identifier => {
                    values.push(lit);
                    let (t2, l2) = self.peek(Context::Values);
                    match t2 {
                        Token::Comma => continue,
                        Token::CloseParen => return Ok(values),
                        _ => return Err(format!("found '{l2}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    let (t2, _) = self.peek(Context::Values);
                    if t2 == Token::CloseParen {
                        values.push(String::new());
                        return Ok(values);
                    }
                    if t2 == Token::Comma {
                        self.consume(Context::Values);
                        values.push(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        let (tok, _) = self.peek(Context::Values);
        if matches!(tok, Token::End | Token::Comma) {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.consume(Context::Values);
        if tok == Token::Identifier {
            Ok(vec![lit])
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

fn contextual(tok: Token, ctx: Context) -> Token {
    match (ctx, tok) {
        (Context::Values, Token::In | Token::NotIn) => Token::Identifier,
        (_, tok) => tok,
    }
}

fn join_errors(errors: &[FieldError]) -> String {
    crate::field::aggregate_message(errors).unwrap_or_default()
}

fn new_requirement(key: String, op: Operator, values: Vec<String>) -> Result<Requirement, String> {
    let mut values = values;
    values.sort();
    values.dedup();
    let count_error = |detail: &str| {
        let path = FieldPath::new("values");
        join_errors(&[FieldError::invalid(
            &path,
            crate::field::BadValue::Json(serde_json::json!(values)),
            detail,
        )])
    };
    match op {
        Operator::In | Operator::NotIn if values.is_empty() => {
            return Err(count_error(
                "for 'in', 'notin' operators, values set can't be empty",
            ))
        }
        Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
            return Err(count_error(
                "exact-match compatibility requires one single value",
            ))
        }
        Operator::GreaterThan | Operator::LessThan => {
            if values.len() != 1 {
                return Err(count_error(
                    "for 'Gt', 'Lt' operators, exactly one value is required",
                ));
            }
            if values[0].parse::<i64>().is_err() {
                let path = FieldPath::new("values").index(0);
                return Err(join_errors(&[FieldError::invalid(
                    &path,
                    values[0].as_str(),
                    "for 'Gt', 'Lt' operators, the value must be an integer",
                )]));
            }
        }
        _ => {}
    }
    if !matches!(op, Operator::GreaterThan | Operator::LessThan) {
        let mut errors = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let path = FieldPath::new("values").index(i).key(&key);
            for m in label_value_errors(v) {
                errors.push(FieldError::invalid(&path, v.as_str(), m));
            }
        }
        if !errors.is_empty() {
            return Err(join_errors(&errors));
        }
    }
    Ok(Requirement {
        key,
        operator: op,
        values,
    })
}

/// Parses a `labelSelector` query value.
pub fn parse(selector: &str) -> Result<LabelSelector, ParseError> {
    let mut lexer = Lexer {
        input: selector.as_bytes(),
        pos: 0,
    };
    let mut tokens = Vec::new();
    loop {
        let (tok, lit) = lexer.next();
        let done = matches!(tok, Token::End | Token::Error);
        tokens.push((tok, lit));
        if done {
            break;
        }
    }
    let mut parser = Parser { tokens, pos: 0 };
    let mut requirements = parser.parse().map_err(ParseError)?;
    requirements.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(LabelSelector { requirements })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn matches_every_operator() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("app in (web,db)", true),
            ("app in (db)", false),
            ("app notin (db)", true),
            ("app notin (web)", false),
            ("missing notin (x)", true),
            ("missing in (x)", false),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("n>4", true),
            ("n>5", false),
            ("n<6", true),
            ("app>1", false),
            ("missing<9", false),
            ("app=web,tier=front", true),
            ("app=web,tier=back", false),
            (" app = web , tier in ( front ) ", true),
            ("app=", false),
            ("empty=", true),
        ];
        let mut with_empty = l.clone();
        with_empty.insert("empty".into(), String::new());
        for (sel, want) in cases {
            let s = parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(&with_empty), *want, "selector {sel:?}");
        }
    }

    #[test]
    fn parse_errors_read_like_go() {
        let cases: &[(&str, &str)] = &[
            (
                "app IN (a)",
                "unable to parse requirement: found 'IN', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "! ==a",
                "unable to parse requirement: found '==', expected: identifier",
            ),
            (
                "==a",
                "found '==', expected: !, identifier, or 'end of string'",
            ),
            ("app=a,", "found '', expected: identifier after ','"),
            (
                "app in a",
                "unable to parse requirement: found 'a' expected: '('",
            ),
            (
                "app in (a",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            ("app=a b", "found 'b', expected: ',' or 'end of string'"),
            (
                ",",
                "found ',', expected: !, identifier, or 'end of string'",
            ),
            (
                "n>a",
                "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer",
            ),
        ];
        for (sel, want) in cases {
            let err = parse(sel).expect_err(sel);
            assert_eq!(err.0, *want, "selector {sel:?}");
        }
    }

    #[test]
    fn invalid_keys_and_values_are_rejected() {
        let err = parse("a b=c").expect_err("space");
        assert!(err.0.contains("expected"), "{err}");
        let err = parse("app=-bad-").expect_err("value");
        assert!(
            err.0.starts_with("unable to parse requirement: values[0][app]: Invalid value: \"-bad-\": a valid label must be"),
            "{err}"
        );
        let err = parse("-k=v").expect_err("key");
        assert!(
            err.0.starts_with(
                "unable to parse requirement: key: Invalid value: \"-k\": name part must"
            ),
            "{err}"
        );
    }

    #[test]
    fn set_value_edge_cases() {
        let s = parse("k in ()").expect("empty set");
        assert_eq!(s.requirements[0].values, vec![String::new()]);
        let s = parse("k in (,a)").expect("leading comma");
        assert_eq!(
            s.requirements[0].values,
            vec![String::new(), "a".to_string()]
        );
        let s = parse("k in (b,a,b)").expect("dedup");
        assert_eq!(s.requirements[0].values, vec!["a".to_string(), "b".into()]);
        assert_eq!(parse("k=v").expect("eq").required_value("k"), Some("v"));
    }
}
