//! The bounds that keep one request's cost a small multiple of its size (issue 13): how deep a
//! body may nest, how much work its YAML may cost the parser, how far YAML aliases may expand,
//! how much a JSON patch may copy and shift, and how large a patched object may grow. Each
//! bound is checked while the work happens, and each refusal is a Status naming its limit.

use std::io;

use apimachinery::errors::{ApiError, MAX_REQUEST_BODY_BYTES};
use serde_json::Value;

/// The deepest JSON serde_json decodes: its recursion limit counts down from 128 and refuses
/// the 128th level.
pub const JSON_MAX_DEPTH: usize = 127;

/// The deepest YAML serde_norway decodes (its recursion limit refuses the 129th level). The
/// pre-scan refuses at the same depth: go-yaml allows 10,000, but anything past 128 fails to
/// decode here anyway, so scanning it first would only spend time on a refusal.
pub const YAML_MAX_DEPTH: usize = 128;

/// The most YAML tokens, each weighted by the flow collections open around it, a body may
/// hold. libyaml's scanner walks its stack of possible simple keys (one per open `[` or `{`)
/// before every token, so a token costs as much as its flow depth; that is what made 100,000
/// nested brackets cost 23 s. At about a nanosecond per step this bounds the walk to some
/// tens of milliseconds, while a 3 MiB body whose tokens sit ten collections deep stays under
/// it (JSON, the common deep case, does not reach libyaml at all: see `decode::yaml_value`).
pub const YAML_MAX_FLOW_WORK: u64 = 32 * 1024 * 1024;

/// The least a YAML body may expand to through aliases, in bytes of decoded scalars plus one
/// per node; larger bodies may expand to twice their size (see [`yaml_expansion_budget`]).
pub const YAML_MIN_EXPANSION_BUDGET: usize = 64 * 1024;

/// kube's `JSONPatchMaxCopyBytes`: the JSON size of all values a patch's `copy` operations
/// duplicate, in total.
pub const MAX_JSON_PATCH_COPY_BYTES: usize = MAX_REQUEST_BODY_BYTES;

/// The most array elements a JSON patch's operations may shift, in total: each insertion or
/// removal in a list moves every element after it, so 10,000 operations at the head of a
/// long list would otherwise cost billions of moves. About 30 ms of moving at most.
pub const MAX_JSON_PATCH_ARRAY_SHIFTS: usize = 4 * 1024 * 1024;

/// The largest object, as JSON, any patch may produce: the body, the copy allowance and the
/// object patched, with room to spare.
pub const MAX_PATCHED_OBJECT_BYTES: usize = 3 * MAX_REQUEST_BODY_BYTES;

/// The most unknown or duplicate fields a decoding error or warning list names one by one.
pub const MAX_REPORTED_FIELDS: usize = 100;

/// The longest field path a report prints; longer ones are cut and end in `...`.
pub const MAX_FIELD_PATH_BYTES: usize = 1024;

/// A request refused for the cost it would have: each names the limit it hit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error("the request body is nested too deeply: more than {0} levels")]
    Depth(usize),
    #[error(
        "the request body is too complex: the nesting depths of its YAML tokens add up to more than {limit}",
        limit = YAML_MAX_FLOW_WORK
    )]
    YamlFlowWork,
    #[error(
        "the request body is too large once its YAML aliases are expanded: more than {0} bytes"
    )]
    YamlExpansion(usize),
    /// kube's (evanphx/json-patch's) wording, sent as the 422's cause as kube does.
    #[error(
        "Unable to complete the copy, the accumulated size increase of copy is {0}, exceeding the limit {limit}",
        limit = MAX_JSON_PATCH_COPY_BYTES
    )]
    JsonPatchCopies(usize),
    #[error(
        "Unable to complete the patch, its operations would shift more than {limit} array elements",
        limit = MAX_JSON_PATCH_ARRAY_SHIFTS
    )]
    JsonPatchShifts,
    #[error(
        "the patched object is larger than the limit of {limit} bytes",
        limit = MAX_PATCHED_OBJECT_BYTES
    )]
    PatchedObject,
}

impl From<LimitExceeded> for ApiError {
    fn from(e: LimitExceeded) -> Self {
        let message = e.to_string();
        match e {
            LimitExceeded::Depth(_)
            | LimitExceeded::YamlFlowWork
            | LimitExceeded::YamlExpansion(_) => ApiError::BadRequest(message),
            // kube answers a patch that fails to apply, the copy limit included, with a 422.
            LimitExceeded::JsonPatchCopies(_) | LimitExceeded::JsonPatchShifts => {
                ApiError::Unprocessable(message)
            }
            LimitExceeded::PatchedObject => ApiError::RequestEntityTooLarge(message),
        }
    }
}

/// Whether serde_json gave up because the input nests past [`JSON_MAX_DEPTH`]. serde_json
/// exposes no error code, only this message.
pub fn is_json_recursion_limit(e: &serde_json::Error) -> bool {
    e.to_string().starts_with("recursion limit exceeded")
}

/// The error of a JSON body that does not decode: the depth limit by name, anything else as
/// `describe` words it.
pub fn json_decode_error(
    e: &serde_json::Error,
    describe: impl FnOnce(&serde_json::Error) -> String,
) -> ApiError {
    if is_json_recursion_limit(e) {
        return LimitExceeded::Depth(JSON_MAX_DEPTH).into();
    }
    ApiError::BadRequest(describe(e))
}

/// How far a YAML body of `body_len` bytes may expand through aliases: twice its size (no
/// alias-free document reaches 1.5 times), and at least [`YAML_MIN_EXPANSION_BUDGET`] so small
/// documents may reuse anchors freely.
pub fn yaml_expansion_budget(body_len: usize) -> usize {
    body_len.saturating_mul(2).max(YAML_MIN_EXPANSION_BUDGET)
}

/// The length of `value`'s JSON, counted without building it.
pub fn serialized_len(value: &Value) -> usize {
    let mut counter = ByteCounter {
        count: 0,
        limit: usize::MAX,
    };
    // Counting cannot fail below usize::MAX, and a Value always serializes.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.count
}

/// Whether `value`'s JSON fits in `limit` bytes; counting stops at the first byte past it.
pub fn fits_within(value: &Value, limit: usize) -> bool {
    let mut counter = ByteCounter { count: 0, limit };
    serde_json::to_writer(&mut counter, value).is_ok()
}

/// A patch result must stay within [`MAX_PATCHED_OBJECT_BYTES`].
pub fn check_patched_size(doc: &Value) -> Result<(), LimitExceeded> {
    if fits_within(doc, MAX_PATCHED_OBJECT_BYTES) {
        Ok(())
    } else {
        Err(LimitExceeded::PatchedObject)
    }
}

struct ByteCounter {
    count: usize,
    limit: usize,
}

impl io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.count = self.count.saturating_add(buf.len());
        if self.count > self.limit {
            return Err(io::Error::other("JSON size limit reached"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Refuses, before libyaml sees it, YAML whose collections nest past [`YAML_MAX_DEPTH`] or
/// whose tokens sit so deep in flow collections that scanning them would cost more than
/// [`YAML_MAX_FLOW_WORK`] (see there). Linear in the body.
///
/// Counting brackets is not enough: brackets inside quoted, block and plain scalars, comments,
/// tags and directives are text, and telling them apart needs the block indentation (where a
/// block scalar or a multi-line plain scalar ends depends on it). So this follows libyaml's
/// scanner (`yaml_parser_fetch_next_token` and the `scan_*` functions it calls) decision for
/// decision, keeping only the state those decisions read. Where libyaml would stop with an
/// error, nothing after matters to its cost, and the scan just carries on.
pub fn check_yaml_nesting(body: &[u8]) -> Result<(), LimitExceeded> {
    YamlScanner::new(valid_utf8_prefix(body)).run()
}

/// libyaml stops at the first byte that is not UTF-8; so does the scan.
fn valid_utf8_prefix(body: &[u8]) -> &[u8] {
    match std::str::from_utf8(body) {
        Ok(_) => body,
        Err(e) => body.get(..e.valid_up_to()).unwrap_or_default(),
    }
}

/// A possible simple key at flow level 0 (`key: value` in block context): libyaml starts a
/// block mapping at its column when the `:` comes. Keys inside flow collections move no
/// indentation, so they are not tracked.
#[derive(Clone, Copy)]
struct SimpleKey {
    pos: usize,
    line: usize,
    column: i64,
}

/// libyaml's scanner state, as far as flow depth and block indentation depend on it. Field
/// names follow `yaml_parser_t`.
struct YamlScanner<'a> {
    src: &'a [u8],
    /// Byte offset, as libyaml's `mark.index`.
    pos: usize,
    line: usize,
    /// Characters since the last line break, as libyaml's `mark.column`.
    column: i64,
    flow_level: usize,
    /// The column of the innermost block collection; -1 outside any.
    indent: i64,
    indents: Vec<i64>,
    simple_key_allowed: bool,
    block_key: Option<SimpleKey>,
    work: u64,
}

impl<'a> YamlScanner<'a> {
    fn new(src: &'a [u8]) -> Self {
        YamlScanner {
            src,
            pos: 0,
            line: 0,
            column: 0,
            flow_level: 0,
            indent: -1,
            indents: Vec::new(),
            simple_key_allowed: true,
            block_key: None,
            work: 0,
        }
    }

    fn run(mut self) -> Result<(), LimitExceeded> {
        loop {
            self.skip_to_next_token();
            self.expire_stale_block_key();
            self.unroll_indent(self.column);
            if self.pos >= self.src.len() {
                return Ok(());
            }
            self.charge_token()?;
            self.fetch_token()?;
        }
    }

    fn charge_token(&mut self) -> Result<(), LimitExceeded> {
        self.work = self.work.saturating_add(self.flow_level as u64);
        if self.work > YAML_MAX_FLOW_WORK {
            return Err(LimitExceeded::YamlFlowWork);
        }
        Ok(())
    }

    /// One token, chosen as `yaml_parser_fetch_next_token` chooses it.
    fn fetch_token(&mut self) -> Result<(), LimitExceeded> {
        let c = self.peek(0);
        if self.column == 0 && c == b'%' {
            self.fetch_directive();
            return Ok(());
        }
        if self.column == 0 && self.at_document_indicator() {
            self.fetch_document_indicator();
            return Ok(());
        }
        match c {
            b'[' | b'{' => self.fetch_flow_collection_start()?,
            b']' | b'}' => self.fetch_flow_collection_end(),
            b',' => self.fetch_flow_entry(),
            b'-' if self.is_blankz(1) => self.fetch_block_entry()?,
            b'?' if self.flow_level > 0 || self.is_blankz(1) => self.fetch_key()?,
            b':' if self.flow_level > 0 || self.is_blankz(1) => self.fetch_value()?,
            b'*' | b'&' => self.fetch_anchor(),
            b'!' => self.fetch_tag(),
            b'|' | b'>' if self.flow_level == 0 => self.fetch_block_scalar(),
            b'\'' => self.fetch_quoted_scalar(true),
            b'"' => self.fetch_quoted_scalar(false),
            _ if self.can_start_plain_scalar() => self.fetch_plain_scalar(),
            // libyaml stops here: "found character that cannot start any token".
            _ => self.advance(),
        }
        Ok(())
    }

    fn can_start_plain_scalar(&self) -> bool {
        let c = self.peek(0);
        let indicator = matches!(
            c,
            b'-' | b'?'
                | b':'
                | b','
                | b'['
                | b']'
                | b'{'
                | b'}'
                | b'#'
                | b'&'
                | b'*'
                | b'!'
                | b'|'
                | b'>'
                | b'\''
                | b'"'
                | b'%'
                | b'@'
                | b'`'
        );
        !(self.is_blankz(0) || indicator)
            || (c == b'-' && !self.is_blank(1))
            || (self.flow_level == 0 && matches!(c, b'?' | b':') && !self.is_blankz(1))
    }

    // Token kinds, after libyaml's `yaml_parser_fetch_*`.

    fn fetch_directive(&mut self) {
        self.unroll_indent(-1);
        self.remove_simple_key();
        self.simple_key_allowed = false;
        // A directive takes its whole line; its %TAG prefix may hold brackets.
        self.skip_to_line_end();
        if self.is_break(0) {
            self.skip_line_break();
        }
    }

    fn fetch_document_indicator(&mut self) {
        self.unroll_indent(-1);
        self.remove_simple_key();
        self.simple_key_allowed = false;
        for _ in 0..3 {
            self.advance();
        }
    }

    fn fetch_flow_collection_start(&mut self) -> Result<(), LimitExceeded> {
        self.save_simple_key();
        self.flow_level += 1;
        self.check_depth()?;
        self.simple_key_allowed = true;
        self.advance();
        Ok(())
    }

    fn fetch_flow_collection_end(&mut self) {
        self.remove_simple_key();
        self.flow_level = self.flow_level.saturating_sub(1);
        self.simple_key_allowed = false;
        self.advance();
    }

    fn fetch_flow_entry(&mut self) {
        self.remove_simple_key();
        self.simple_key_allowed = true;
        self.advance();
    }

    fn fetch_block_entry(&mut self) -> Result<(), LimitExceeded> {
        self.roll_indent(self.column)?;
        self.remove_simple_key();
        self.simple_key_allowed = true;
        self.advance();
        Ok(())
    }

    fn fetch_key(&mut self) -> Result<(), LimitExceeded> {
        self.roll_indent(self.column)?;
        self.remove_simple_key();
        self.simple_key_allowed = self.flow_level == 0;
        self.advance();
        Ok(())
    }

    fn fetch_value(&mut self) -> Result<(), LimitExceeded> {
        if self.flow_level > 0 {
            self.simple_key_allowed = false;
        } else if let Some(key) = self.block_key.take() {
            self.roll_indent(key.column)?;
            self.simple_key_allowed = false;
        } else {
            self.roll_indent(self.column)?;
            self.simple_key_allowed = true;
        }
        self.advance();
        Ok(())
    }

    fn fetch_anchor(&mut self) {
        self.save_simple_key();
        self.simple_key_allowed = false;
        self.advance();
        while is_anchor_char(self.peek(0)) {
            self.advance();
        }
    }

    /// A tag: `!<verbatim>` may hold `,`, `[` and `]`; a shorthand (`!`, `!!x`, `!h!x`) holds
    /// handle and URI characters, quotes included.
    fn fetch_tag(&mut self) {
        self.save_simple_key();
        self.simple_key_allowed = false;
        self.advance();
        let verbatim = self.peek(0) == b'<';
        if verbatim {
            self.advance();
        }
        while is_tag_uri_char(self.peek(0), verbatim) {
            self.advance();
        }
        if verbatim && self.peek(0) == b'>' {
            self.advance();
        }
    }

    fn fetch_block_scalar(&mut self) {
        self.remove_simple_key();
        self.simple_key_allowed = true;
        self.scan_block_scalar();
    }

    fn fetch_quoted_scalar(&mut self, single: bool) {
        self.save_simple_key();
        self.simple_key_allowed = false;
        self.scan_quoted_scalar(single);
    }

    fn fetch_plain_scalar(&mut self) {
        self.save_simple_key();
        self.simple_key_allowed = false;
        if self.scan_plain_scalar() {
            self.simple_key_allowed = true;
        }
    }

    // Scalars, after libyaml's `yaml_parser_scan_*`.

    /// `|` or `>`, its header, then every line indented at least as far as the first one (or
    /// as its explicit indentation says), and the blank lines among them.
    fn scan_block_scalar(&mut self) {
        self.advance();
        let increment = self.scan_block_scalar_header();
        let mut indent = match increment {
            0 => 0,
            n if self.indent >= 0 => self.indent + n,
            n => n,
        };
        self.skip_block_scalar_breaks(&mut indent);
        while self.column == indent && !self.is_z(0) {
            self.skip_to_line_end();
            if !self.is_break(0) {
                break;
            }
            self.skip_line_break();
            self.skip_block_scalar_breaks(&mut indent);
        }
    }

    /// The chomping and indentation indicators, a comment and the line break; returns the
    /// explicit indentation (0 when absent).
    fn scan_block_scalar_header(&mut self) -> i64 {
        let mut increment = 0;
        if matches!(self.peek(0), b'+' | b'-') {
            self.advance();
            if self.peek(0).is_ascii_digit() {
                increment = i64::from(self.peek(0) - b'0');
                self.advance();
            }
        } else if self.peek(0).is_ascii_digit() {
            increment = i64::from(self.peek(0) - b'0');
            self.advance();
            if matches!(self.peek(0), b'+' | b'-') {
                self.advance();
            }
        }
        while self.is_blank(0) {
            self.advance();
        }
        if self.peek(0) == b'#' {
            self.skip_to_line_end();
        }
        if self.is_break(0) {
            self.skip_line_break();
        }
        increment
    }

    /// `yaml_parser_scan_block_scalar_breaks`: blank lines and indentation; with no
    /// indentation known yet, it becomes the deepest seen, and always more than the block's.
    fn skip_block_scalar_breaks(&mut self, indent: &mut i64) {
        let mut max_indent = 0;
        loop {
            while (*indent == 0 || self.column < *indent) && self.peek(0) == b' ' {
                self.advance();
            }
            max_indent = max_indent.max(self.column);
            if (*indent == 0 || self.column < *indent) && self.peek(0) == b'\t' {
                break; // libyaml: "found a tab character where an indentation space is expected"
            }
            if !self.is_break(0) {
                break;
            }
            self.skip_line_break();
        }
        if *indent == 0 {
            *indent = max_indent.max(self.indent + 1).max(1);
        }
    }

    fn scan_quoted_scalar(&mut self, single: bool) {
        let quote = if single { b'\'' } else { b'"' };
        self.advance();
        loop {
            if self.is_z(0) || (self.column == 0 && self.at_document_indicator()) {
                return; // libyaml: an unterminated or interrupted quoted scalar
            }
            let c = self.peek(0);
            if single && c == b'\'' && self.peek(1) == b'\'' {
                self.advance();
                self.advance();
            } else if c == quote {
                self.advance();
                return;
            } else if !single && c == b'\\' {
                self.advance();
                if self.is_break(0) {
                    self.skip_line_break();
                } else {
                    self.advance();
                }
            } else if self.is_break(0) {
                self.skip_line_break();
            } else {
                self.advance();
            }
        }
    }

    /// A plain scalar, which may run over several lines: in block context while they are
    /// indented past the enclosing block collection, in flow context until an indicator.
    /// Returns whether it ended after a line break (libyaml's `leading_blanks`).
    fn scan_plain_scalar(&mut self) -> bool {
        let indent = self.indent + 1;
        let mut leading_blanks = false;
        loop {
            if (self.column == 0 && self.at_document_indicator()) || self.peek(0) == b'#' {
                break;
            }
            while !self.is_blankz(0) {
                let c = self.peek(0);
                if self.flow_level > 0
                    && c == b':'
                    && matches!(self.peek(1), b',' | b'?' | b'[' | b']' | b'{' | b'}')
                {
                    return leading_blanks; // libyaml: "found unexpected ':'"
                }
                let ends_scalar = (c == b':' && self.is_blankz(1))
                    || (self.flow_level > 0 && matches!(c, b',' | b'[' | b']' | b'{' | b'}'));
                if ends_scalar {
                    break;
                }
                leading_blanks = false;
                self.advance();
            }
            if !(self.is_blank(0) || self.is_break(0)) {
                break;
            }
            while self.is_blank(0) || self.is_break(0) {
                if self.is_break(0) {
                    self.skip_line_break();
                    leading_blanks = true;
                } else if leading_blanks && self.column < indent && self.peek(0) == b'\t' {
                    return leading_blanks; // libyaml: a tab that violates indentation
                } else {
                    self.advance();
                }
            }
            if self.flow_level == 0 && self.column < indent {
                break;
            }
        }
        leading_blanks
    }

    // Whitespace, comments and line breaks between tokens.

    fn skip_to_next_token(&mut self) {
        loop {
            if self.column == 0 && self.src.get(self.pos..self.pos + 3) == Some(&BOM[..]) {
                self.advance();
            }
            while self.peek(0) == b' '
                || ((self.flow_level > 0 || !self.simple_key_allowed) && self.peek(0) == b'\t')
            {
                self.advance();
            }
            if self.peek(0) == b'#' {
                self.skip_to_line_end();
            }
            if !self.is_break(0) {
                return;
            }
            self.skip_line_break();
            if self.flow_level == 0 {
                self.simple_key_allowed = true;
            }
        }
    }

    fn skip_to_line_end(&mut self) {
        while !self.is_breakz(0) {
            self.advance();
        }
    }

    // Simple keys and indentation, after libyaml's functions of the same names.

    fn save_simple_key(&mut self) {
        if self.flow_level == 0 && self.simple_key_allowed {
            self.block_key = Some(SimpleKey {
                pos: self.pos,
                line: self.line,
                column: self.column,
            });
        }
    }

    fn remove_simple_key(&mut self) {
        if self.flow_level == 0 {
            self.block_key = None;
        }
    }

    /// A simple key must end on its line and within 1024 bytes.
    fn expire_stale_block_key(&mut self) {
        if let Some(key) = self.block_key {
            if key.line < self.line || key.pos + 1024 < self.pos {
                self.block_key = None;
            }
        }
    }

    /// Opens a block collection at `column` if it is deeper than the current one.
    fn roll_indent(&mut self, column: i64) -> Result<(), LimitExceeded> {
        if self.flow_level == 0 && self.indent < column {
            self.indents.push(self.indent);
            self.indent = column;
            self.check_depth()?;
        }
        Ok(())
    }

    fn unroll_indent(&mut self, column: i64) {
        if self.flow_level > 0 {
            return;
        }
        while self.indent > column {
            self.indent = self.indents.pop().unwrap_or(-1);
        }
    }

    /// Every open block collection and flow collection is a level serde_norway counts.
    fn check_depth(&self) -> Result<(), LimitExceeded> {
        if self.indents.len() + self.flow_level > YAML_MAX_DEPTH {
            return Err(LimitExceeded::Depth(YAML_MAX_DEPTH));
        }
        Ok(())
    }

    // Characters. Offsets are in bytes, as libyaml's `CHECK_AT`; 0 stands for the end.

    fn peek(&self, offset: usize) -> u8 {
        self.src.get(self.pos + offset).copied().unwrap_or(0)
    }

    /// Moves past one character.
    fn advance(&mut self) {
        let width = match self.peek(0) {
            0xF0..=0xFF => 4,
            0xE0..=0xEF => 3,
            0xC0..=0xDF => 2,
            _ => 1,
        };
        self.pos = (self.pos + width).min(self.src.len());
        self.column += 1;
    }

    fn skip_line_break(&mut self) {
        if self.peek(0) == b'\r' && self.peek(1) == b'\n' {
            self.pos += 2;
        } else {
            self.advance();
        }
        self.line += 1;
        self.column = 0;
    }

    fn at_document_indicator(&self) -> bool {
        let marker = self.src.get(self.pos..self.pos + 3);
        (marker == Some(&b"---"[..]) || marker == Some(&b"..."[..])) && self.is_blankz(3)
    }

    fn is_z(&self, offset: usize) -> bool {
        self.peek(offset) == 0
    }

    fn is_blank(&self, offset: usize) -> bool {
        matches!(self.peek(offset), b' ' | b'\t')
    }

    /// CR, LF, and the Unicode breaks NEL, LS and PS.
    fn is_break(&self, offset: usize) -> bool {
        match self.peek(offset) {
            b'\r' | b'\n' => true,
            0xC2 => self.peek(offset + 1) == 0x85,
            0xE2 => self.peek(offset + 1) == 0x80 && matches!(self.peek(offset + 2), 0xA8 | 0xA9),
            _ => false,
        }
    }

    fn is_breakz(&self, offset: usize) -> bool {
        self.is_break(offset) || self.is_z(offset)
    }

    fn is_blankz(&self, offset: usize) -> bool {
        self.is_blank(offset) || self.is_breakz(offset)
    }
}

/// The UTF-8 byte order mark, which libyaml skips at the start of a line.
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

fn is_anchor_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-')
}

fn is_tag_uri_char(c: u8, verbatim: bool) -> bool {
    is_anchor_char(c)
        || matches!(
            c,
            b';' | b'/'
                | b'?'
                | b':'
                | b'@'
                | b'&'
                | b'='
                | b'+'
                | b'$'
                | b'.'
                | b'%'
                | b'!'
                | b'~'
                | b'*'
                | b'\''
                | b'('
                | b')'
        )
        || (verbatim && matches!(c, b',' | b'[' | b']'))
}

/// Text that stops growing at [`MAX_FIELD_PATH_BYTES`], ending in `...` once cut: field paths
/// in messages, so a hostile key is printed once, not in full for every field below it.
#[derive(Debug, Default)]
pub struct CutText {
    text: String,
    cut: bool,
}

impl CutText {
    pub fn push(&mut self, part: &str) {
        if self.cut {
            return;
        }
        let room = MAX_FIELD_PATH_BYTES.saturating_sub(self.text.len());
        if part.len() <= room {
            self.text.push_str(part);
            return;
        }
        let mut end = room;
        while !part.is_char_boundary(end) {
            end -= 1;
        }
        self.text.push_str(part.get(..end).unwrap_or_default());
        self.text.push_str("...");
        self.cut = true;
    }

    pub fn is_cut(&self) -> bool {
        self.cut
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    pub fn into_string(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nest(open: &str, middle: &str, close: &str, depth: usize) -> String {
        format!("{}{middle}{}", open.repeat(depth), close.repeat(depth))
    }

    fn scan(text: &str) -> Result<(), LimitExceeded> {
        check_yaml_nesting(text.as_bytes())
    }

    #[test]
    fn the_issues_deep_flow_sequence_is_refused() {
        let body = format!("spec: {}", nest("[", "", "]", 100_000));
        assert_eq!(scan(&body), Err(LimitExceeded::Depth(YAML_MAX_DEPTH)));
        assert_eq!(
            ApiError::from(LimitExceeded::Depth(YAML_MAX_DEPTH)).to_string(),
            "the request body is nested too deeply: more than 128 levels"
        );
    }

    #[test]
    fn deep_flow_maps_and_block_nesting_are_refused() {
        let maps = nest("{a: ", "1", "}", 200);
        assert_eq!(scan(&maps), Err(LimitExceeded::Depth(YAML_MAX_DEPTH)));
        let sequences = format!("{}x\n", "- ".repeat(200));
        assert_eq!(scan(&sequences), Err(LimitExceeded::Depth(YAML_MAX_DEPTH)));
        let mappings: String = (0..200).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
        assert_eq!(scan(&mappings), Err(LimitExceeded::Depth(YAML_MAX_DEPTH)));
    }

    #[test]
    fn legitimate_nesting_passes() {
        assert_eq!(scan(&nest("[", "", "]", 100)), Ok(()));
        assert_eq!(
            scan(&format!("a:\n  b: {}\n", nest("{c: ", "1", "}", 100))),
            Ok(())
        );
        let mappings: String = (0..100).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
        assert_eq!(scan(&mappings), Ok(()));
    }

    #[test]
    fn brackets_in_text_do_not_count() {
        let deep = "[".repeat(500);
        let closers = "]".repeat(500);
        for text in [
            format!("a: \"{deep}\"\n"),
            format!("a: '{deep}'\n"),
            format!("a: 'it''s {deep}'\n"),
            format!("a: \"\\\"{deep}\"\n"),
            format!("# {deep}\na: 1\n"),
            format!("a: 1 # {deep}\n"),
            format!("a: x{deep}\n"),
            format!("a: b c {deep}\n"),
            format!("a: b\n  {deep}\n"),
            format!("a: |\n  {deep}\n  {deep}\nb: 1\n"),
            format!("a: >-\n  {deep}\n\n  more\nb: 1\n"),
            format!("a: !<tag:x{deep}> b\n"),
            format!("%TAG !e! tag:{deep}\n---\na: 1\n"),
            format!("[a, \"{deep}\", '{closers}', b]\n"),
        ] {
            assert_eq!(scan(&text), Ok(()), "{text}");
        }
    }

    #[test]
    fn text_cannot_hide_real_nesting() {
        let deep = nest("[", "", "]", 300);
        for text in [
            // A quote inside a block scalar is text: the sibling after it is structure.
            format!("a: |\n  \"\nb: {deep}\n"),
            // The block scalar ends at the sibling key, indented like its parent.
            format!("a:\n  b: |\n  c: {deep}\n"),
            // A quote inside a plain scalar is text, and the scalar ends at `: `.
            format!("k, \"c: {deep}\n"),
            // In flow context a plain scalar ends at the first indicator.
            format!("[a \"x, {deep}, y\"]\n"),
            // A comment ends at a Unicode line separator.
            format!("# c\u{2028}a: {deep}\n"),
            // Closing brackets in a quoted scalar close nothing.
            format!(
                "{}\"{}\", {}{}\n",
                "[".repeat(100),
                "]".repeat(100),
                "[".repeat(100),
                "]".repeat(200)
            ),
        ] {
            assert_eq!(
                scan(&text),
                Err(LimitExceeded::Depth(YAML_MAX_DEPTH)),
                "{text}"
            );
        }
    }

    #[test]
    fn many_tokens_deep_in_flow_are_refused() {
        let body = format!(
            "{}{}1{}",
            "[".repeat(100),
            "a, ".repeat(400_000),
            "]".repeat(100)
        );
        assert_eq!(scan(&body), Err(LimitExceeded::YamlFlowWork));
        let shallow = format!("[{}1]", "a, ".repeat(400_000));
        assert_eq!(scan(&shallow), Ok(()));
    }

    #[test]
    fn scanning_arbitrary_bytes_terminates() {
        let cases: [&[u8]; 5] = [
            b"\xff\xfe[[[",
            b"a: \"unterminated [[[",
            b"- \t- x\r\n? [\n: ]\n...\n%YAML 1.1\n--- |9+\n x",
            b"\xEF\xBB\xBF{a: [b, {c: d}]}\x00[[[",
            b"a: \xC2\x85b\xE2\x80\xA9c",
        ];
        for text in cases {
            assert_eq!(check_yaml_nesting(text), Ok(()));
        }
    }

    #[test]
    fn sizes_are_counted_without_serializing() {
        let value = json!({"a": [1, "two", {"b": null}]});
        assert_eq!(serialized_len(&value), value.to_string().len());
        assert!(fits_within(&value, value.to_string().len()));
        assert!(!fits_within(&value, value.to_string().len() - 1));
        assert_eq!(check_patched_size(&value), Ok(()));
        let huge = Value::String("x".repeat(MAX_PATCHED_OBJECT_BYTES));
        assert_eq!(check_patched_size(&huge), Err(LimitExceeded::PatchedObject));
        assert_eq!(ApiError::from(LimitExceeded::PatchedObject).code(), 413);
    }

    #[test]
    fn json_depth_errors_name_the_limit() {
        let deep = nest("[", "", "]", 200);
        let e = serde_json::from_str::<Value>(&deep).expect_err("too deep for serde_json");
        let err = json_decode_error(&e, |e| e.to_string());
        assert_eq!(err.code(), 400);
        assert_eq!(
            err.to_string(),
            "the request body is nested too deeply: more than 127 levels"
        );
        let e = serde_json::from_str::<Value>("{").expect_err("truncated");
        let err = json_decode_error(&e, |e| format!("bad: {e}"));
        assert!(
            err.to_string().starts_with("bad: EOF while parsing"),
            "{err}"
        );
    }
}
