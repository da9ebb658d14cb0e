//! JSON Schema validation of OCPP-J payloads against the official OCPP schemas (strict mode).
//!
//! Owns: the schemas embedded in the binary (`schemas/ocpp/{v16,v201}/*.json`, by `build.rs`),
//! their compilation into validation trees ([`Schema`]), the set of them ([`SchemaSet`]) and
//! the validator itself. Pure: no I/O.
//!
//! The validator implements the subset of JSON Schema draft-04 and draft-06 that the OCPP
//! schemas use, following each schema's own `$schema`:
//!
//! - `type` (a name or an array of names; `integer` is a number without a fraction part — in
//!   draft-04 written without one (`5`, not `5.0`), in draft-06 `5.0` counts too), `enum`,
//!   `const`;
//! - strings: `minLength`, `maxLength` (in Unicode code points), `format: date-time` (RFC 3339
//!   with an offset, [`crate::time::parse_rfc3339`]) and `format: uri` (leniently: a scheme, a
//!   colon, no white space);
//! - numbers: `minimum`, `maximum`, `exclusiveMinimum`/`exclusiveMaximum` (draft-04's booleans
//!   and draft-06's numbers), `multipleOf` (in exact decimal arithmetic on the number as written:
//!   `1.6` is a multiple of `0.1`, `16.05` is not);
//! - objects: `properties`, `required`, `additionalProperties` (`false` or a schema);
//! - arrays: `items` (a schema, or an array of schemas with `additionalItems`), `minItems`,
//!   `maxItems`;
//! - `$ref` to a JSON pointer within the same schema (`#/definitions/…`); as in draft-04/06,
//!   a `$ref` replaces its sibling keywords.
//!
//! `enum` and `const` values must be scalars (null, boolean, number, string): the OCPP
//! schemas have no others.
//!
//! Annotations are ignored: `$schema` (read only for the draft), `$id`, `id`, `title`,
//! `description`, `comment`, `$comment`, `javaType`, `tsEnumNames`, `default`, `examples`, and
//! `definitions` (reached through `$ref`). Any other keyword — and any other `format` — is a
//! compile error rather than silently ignored (a test compiles every embedded schema), so the
//! list above is exactly what the official schemas use. Keywords that only apply to another
//! instance type are no-ops there, as the specification says: the official schemas put
//! `additionalProperties: false` on string enums and `additionalItems: false` beside a single
//! `items` schema, and neither constrains anything.
//!
//! Validation happens while the payload is parsed (a serde `DeserializeSeed` carries the schema
//! down the document): nothing is materialised, and parsing stops at the first violation. So
//! errors are deterministic — the first violation in document order: a value's type, enum,
//! length, bounds and format as soon as the value is read; members and items in the order
//! the payload writes them; a missing required property or too few items at the end of the
//! object or array (too many items as soon as there is one more). A key that occurs twice
//! is checked each time. The message names the JSON path and the rule, e.g.
//! `$.meterValue[0].sampledValue[0].unit: "Celsuis" is not one of ["Wh", "kWh", …]`.
//!
//! Schemas are compiled lazily, once per file on first use (the whole set compiles in a few
//! milliseconds; see [`SchemaSet::compile_all`]), and shared between threads.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::marker::PhantomData;
use std::str::FromStr;
use std::sync::OnceLock;

use rust_decimal::Decimal;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{DecodeError, OcppVersion};
use crate::model::DeadLetterReason;
use crate::time::parse_rfc3339;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/ocpp_schemas.rs"));
}

/// The folder of a version's schemas under `schemas/ocpp/`.
fn folder(version: OcppVersion) -> &'static str {
    match version {
        OcppVersion::V16 => "v16",
        OcppVersion::V201 => "v201",
    }
}

/// The file stem suffix of a request or a response schema: 1.6 names a request schema after
/// its action (`Heartbeat.json`), 2.0.1 adds `Request` (`HeartbeatRequest.json`).
fn suffix(version: OcppVersion, kind: MessageKind) -> &'static str {
    match (version, kind) {
        (OcppVersion::V16, MessageKind::Request) => "",
        (OcppVersion::V201, MessageKind::Request) => "Request",
        (_, MessageKind::Response) => "Response",
    }
}

const VERSIONS: [OcppVersion; 2] = [OcppVersion::V16, OcppVersion::V201];

/// Which payload of an action: the CALL's (request) or the CALLRESULT's (response).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    Request,
    Response,
}

/// The first version (1.6, then 2.0.1) that has `action`; `None` for a name that is not an
/// OCPP action.
pub fn version_of_action(action: &str) -> Option<OcppVersion> {
    VERSIONS
        .into_iter()
        .find(|&v| index_of(v, action, MessageKind::Request).is_some())
}

/// Strict mode's check of one CALL, before it is decoded: its payload against the request
/// schema of its action in `version` (the version the frame is read as). An OCPP action that
/// `version` does not have (a 2.0.1-only action in a 1.6 frame, or the reverse) is a violation
/// too; a name that is no OCPP action at all passes, for the decoder to dead-letter as
/// `unknown_action`.
pub(crate) fn check_call(
    set: &SchemaSet,
    version: OcppVersion,
    action: &str,
    payload: &str,
) -> Result<(), DecodeError> {
    let violation = |e: String| {
        DecodeError::new(
            DeadLetterReason::SchemaViolation,
            format!("{action} (OCPP {}): {e}", version.as_str()),
        )
    };
    match set.get(version, action, MessageKind::Request) {
        Some(schema) => schema
            .and_then(|s| s.validate_str(payload))
            .map_err(violation),
        None if version_of_action(action).is_some() => Err(violation(format!(
            "not an action of OCPP {}",
            version.as_str()
        ))),
        None => Ok(()),
    }
}

/// Position of (version, stem = action + suffix) in the embedded table (sorted by version
/// folder, then stem), without building the stem.
fn index_of(version: OcppVersion, action: &str, kind: MessageKind) -> Option<usize> {
    let (folder, suffix) = (folder(version), suffix(version, kind));
    // 1.6 names request schemas after the bare action: `XResponse` is not an action.
    if suffix.is_empty() && action.ends_with("Response") {
        return None;
    }
    embedded::EMBEDDED
        .binary_search_by(|(f, stem, _)| {
            f.cmp(&folder)
                .then_with(|| stem.bytes().cmp(action.bytes().chain(suffix.bytes())))
        })
        .ok()
}

/// The official OCPP schemas, compiled on first use and then shared.
pub struct SchemaSet {
    slots: Box<[OnceLock<Result<Schema, String>>]>,
}

impl Default for SchemaSet {
    fn default() -> Self {
        SchemaSet::new()
    }
}

impl fmt::Debug for SchemaSet {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let compiled = self.slots.iter().filter(|s| s.get().is_some()).count();
        write!(f, "SchemaSet({compiled}/{} compiled)", self.slots.len())
    }
}

impl SchemaSet {
    /// A set over the embedded schemas, none compiled yet.
    pub fn new() -> Self {
        SchemaSet {
            slots: embedded::EMBEDDED.iter().map(|_| OnceLock::new()).collect(),
        }
    }

    /// The process-wide set (what the decoder uses): each schema is compiled once.
    pub fn embedded() -> &'static SchemaSet {
        static SET: OnceLock<SchemaSet> = OnceLock::new();
        SET.get_or_init(SchemaSet::new)
    }

    /// Every embedded schema: (version, file stem).
    pub fn files() -> impl Iterator<Item = (OcppVersion, &'static str)> {
        embedded::EMBEDDED.iter().map(|(dir, stem, _)| {
            let v = VERSIONS
                .into_iter()
                .find(|&v| folder(v) == *dir)
                .expect("build.rs embeds v16 and v201 only");
            (v, *stem)
        })
    }

    /// The schema of `action`'s request or response in `version`: `None` if there is none,
    /// `Some(Err)` if it does not compile (never, for the embedded schemas: a test checks).
    pub fn get(
        &self,
        version: OcppVersion,
        action: &str,
        kind: MessageKind,
    ) -> Option<Result<&Schema, String>> {
        let i = index_of(version, action, kind)?;
        Some(self.compiled(i).map_err(Clone::clone))
    }

    fn compiled(&self, i: usize) -> Result<&Schema, &String> {
        self.slots[i]
            .get_or_init(|| {
                let (folder, stem, text) = embedded::EMBEDDED[i];
                Schema::compile(&format!("{folder}/{stem}.json"), text)
            })
            .as_ref()
    }

    /// Validates a CALL's payload (JSON text) against its action's request schema.
    pub fn validate_call(
        &self,
        version: OcppVersion,
        action: &str,
        payload: &str,
    ) -> Result<(), String> {
        self.validate(version, action, MessageKind::Request, payload)
    }

    /// Validates a CALLRESULT's payload against the response schema of the action of the
    /// CALL it answers (which only correlation by message id can tell).
    pub fn validate_call_result(
        &self,
        version: OcppVersion,
        action: &str,
        payload: &str,
    ) -> Result<(), String> {
        self.validate(version, action, MessageKind::Response, payload)
    }

    /// Validates `payload` against the request or response schema of `action` in `version`.
    /// An action without one is an error too.
    pub fn validate(
        &self,
        version: OcppVersion,
        action: &str,
        kind: MessageKind,
        payload: &str,
    ) -> Result<(), String> {
        match self.get(version, action, kind) {
            Some(schema) => schema?.validate_str(payload),
            None => Err(format!(
                "OCPP {} has no {} schema for {action:?}",
                version.as_str(),
                match kind {
                    MessageKind::Request => "request",
                    MessageKind::Response => "response",
                }
            )),
        }
    }

    /// Compiles every schema now (rather than on first use); returns how many, or the first
    /// that fails.
    pub fn compile_all(&self) -> Result<usize, String> {
        for i in 0..self.slots.len() {
            self.compiled(i).map_err(Clone::clone)?;
        }
        Ok(self.slots.len())
    }
}

// ---------------------------------------------------------------------------------------
// Compiled schemas

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Draft {
    Four,
    Six,
}

/// A compiled schema: a tree of [`Node`]s, with `$ref` targets in `defs`.
pub struct Schema {
    name: String,
    draft: Draft,
    root: Node,
    defs: Vec<Node>,
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Schema({})", self.name)
    }
}

const T_NULL: u8 = 1;
const T_BOOLEAN: u8 = 2;
const T_INTEGER: u8 = 4;
const T_NUMBER: u8 = 8;
const T_STRING: u8 = 16;
const T_ARRAY: u8 = 32;
const T_OBJECT: u8 = 64;
const TYPE_NAMES: [(u8, &str); 7] = [
    (T_NULL, "null"),
    (T_BOOLEAN, "boolean"),
    (T_INTEGER, "integer"),
    (T_NUMBER, "number"),
    (T_STRING, "string"),
    (T_ARRAY, "array"),
    (T_OBJECT, "object"),
];

#[derive(Default)]
struct Node {
    /// `$ref`: the index of the target in `Schema::defs`; the other fields are then unused.
    reference: Option<usize>,
    /// Allowed types (bits); 0 = any.
    types: u8,
    enumeration: Option<Vec<Value>>,
    constant: Option<Value>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    format: Option<Format>,
    minimum: Option<Bound>,
    maximum: Option<Bound>,
    multiple_of: Option<Multiple>,
    properties: Vec<(String, Node)>,
    required: Vec<String>,
    additional_properties: Extra,
    items: Items,
    min_items: Option<u64>,
    max_items: Option<u64>,
}

#[derive(Clone, Copy)]
enum Format {
    DateTime,
    Uri,
}

/// A numeric bound; `exclusive` for `exclusiveMinimum`/`exclusiveMaximum`.
#[derive(Clone, Copy)]
struct Bound {
    value: f64,
    exclusive: bool,
}

struct Multiple {
    value: f64,
    /// Exact, when the schema's number has a decimal form.
    exact: Option<Decimal>,
}

/// `additionalProperties` or `additionalItems`.
#[derive(Default)]
enum Extra {
    #[default]
    Any,
    Deny,
    Schema(Box<Node>),
}

#[derive(Default)]
enum Items {
    #[default]
    Any,
    All(Box<Node>),
    Tuple(Vec<Node>, Extra),
}

/// Keywords that carry no constraint.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "id",
    "title",
    "description",
    "comment",
    "$comment",
    "javaType",
    "tsEnumNames",
    "default",
    "examples",
    "definitions",
];

struct Compiler<'s> {
    root: &'s Value,
    /// `$ref` strings already seen, with their index in `defs`.
    refs: Vec<(String, usize)>,
    defs: Vec<Option<Node>>,
}

impl Schema {
    /// Compiles a schema (JSON text). `name` is used in messages.
    pub fn compile(name: &str, text: &str) -> Result<Schema, String> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let root: Value = serde_json::from_str(text).map_err(|e| format!("{name}: {e}"))?;
        let draft = match root.get("$schema") {
            None => Draft::Four,
            Some(Value::String(s)) if s.contains("draft-04") => Draft::Four,
            Some(Value::String(s)) if s.contains("draft-06") => Draft::Six,
            Some(other) => return Err(format!("{name}: unsupported $schema {other}")),
        };
        let mut c = Compiler {
            root: &root,
            refs: Vec::new(),
            defs: Vec::new(),
        };
        let node = c.node(&root, "#").map_err(|e| format!("{name}: {e}"))?;
        Ok(Schema {
            name: name.to_string(),
            draft,
            root: node,
            defs: c
                .defs
                .into_iter()
                .map(|d| d.expect("every reserved definition is compiled"))
                .collect(),
        })
    }

    /// The name it was compiled with (`v16/Heartbeat.json` for the embedded ones).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Validates a JSON text; the error names the path and the rule of the first violation.
    pub fn validate_str(&self, json: &str) -> Result<(), String> {
        let run = Run {
            schema: self,
            violation: RefCell::new(None),
        };
        let check = Check::at(&run, &self.root, &Path::Root);
        let mut de = serde_json::Deserializer::from_str(json);
        let parsed = de::DeserializeSeed::deserialize(check, &mut de).and_then(|()| de.end());
        match (parsed, run.violation.into_inner()) {
            (_, Some(violation)) => Err(violation),
            (Err(e), None) => Err(format!("$: not JSON: {e}")),
            (Ok(()), None) => Ok(()),
        }
    }

    /// Validates a parsed JSON value (whose objects have no document order: members are
    /// visited in key order).
    pub fn validate_value(&self, value: &Value) -> Result<(), String> {
        self.validate_str(&value.to_string())
    }
}

/// `enum` and `const` values: scalars (all the OCPP schemas need; objects and arrays would
/// have to be materialised to compare).
fn scalar<'v>(v: &'v Value, kw: &str) -> Result<&'v Value, String> {
    match v {
        Value::Array(_) | Value::Object(_) => Err(format!(
            "{kw}: only null, boolean, number and string values are supported, not {v}"
        )),
        _ => Ok(v),
    }
}

fn as_u64(v: &Value, kw: &str) -> Result<u64, String> {
    v.as_u64()
        .ok_or_else(|| format!("{kw} must be a non-negative integer, not {v}"))
}

fn as_f64(v: &Value, kw: &str) -> Result<f64, String> {
    v.as_f64()
        .ok_or_else(|| format!("{kw} must be a number, not {v}"))
}

impl Compiler<'_> {
    fn node(&mut self, s: &Value, at: &str) -> Result<Node, String> {
        let obj = s
            .as_object()
            .ok_or_else(|| format!("{at}: a schema must be an object, not {s}"))?;
        let mut n = Node::default();
        if let Some(r) = obj.get("$ref") {
            let r = r
                .as_str()
                .ok_or_else(|| format!("{at}/$ref: must be a string"))?;
            n.reference = Some(self.reference(r, at)?);
            return Ok(n);
        }
        for (kw, v) in obj {
            let here = || format!("{at}/{kw}");
            match kw.as_str() {
                "type" => {
                    let names: Vec<&Value> = match v {
                        Value::Array(a) => a.iter().collect(),
                        one => vec![one],
                    };
                    for t in names {
                        let name = t.as_str().unwrap_or("");
                        let bit = TYPE_NAMES
                            .iter()
                            .find(|(_, n)| *n == name)
                            .map(|(b, _)| *b)
                            .ok_or_else(|| format!("{}: unknown type {t}", here()))?;
                        n.types |= bit;
                    }
                }
                "enum" => {
                    let a = v
                        .as_array()
                        .ok_or_else(|| format!("{}: must be an array", here()))?;
                    for x in a {
                        scalar(x, &here())?;
                    }
                    n.enumeration = Some(a.clone());
                }
                "const" => n.constant = Some(scalar(v, &here())?.clone()),
                "minLength" => n.min_length = Some(as_u64(v, &here())?),
                "maxLength" => n.max_length = Some(as_u64(v, &here())?),
                "minItems" => n.min_items = Some(as_u64(v, &here())?),
                "maxItems" => n.max_items = Some(as_u64(v, &here())?),
                "format" => {
                    n.format = Some(match v.as_str() {
                        Some("date-time") => Format::DateTime,
                        Some("uri") => Format::Uri,
                        _ => return Err(format!("{}: unsupported format {v}", here())),
                    })
                }
                "minimum" | "maximum" => {
                    let value = as_f64(v, &here())?;
                    let exclusive_kw = if kw == "minimum" {
                        "exclusiveMinimum"
                    } else {
                        "exclusiveMaximum"
                    };
                    // draft-04: a boolean beside the bound makes it exclusive.
                    let exclusive = obj.get(exclusive_kw) == Some(&Value::Bool(true));
                    let b = Bound { value, exclusive };
                    let slot = if kw == "minimum" {
                        &mut n.minimum
                    } else {
                        &mut n.maximum
                    };
                    *slot = Some(tighter(*slot, b, kw == "minimum"));
                }
                "exclusiveMinimum" | "exclusiveMaximum" => match v {
                    Value::Bool(_) => {} // read with minimum/maximum
                    // draft-06: a bound of its own.
                    _ => {
                        let value = as_f64(v, &here())?;
                        let b = Bound {
                            value,
                            exclusive: true,
                        };
                        let is_min = kw == "exclusiveMinimum";
                        let slot = if is_min {
                            &mut n.minimum
                        } else {
                            &mut n.maximum
                        };
                        *slot = Some(tighter(*slot, b, is_min));
                    }
                },
                "multipleOf" => {
                    let value = as_f64(v, &here())?;
                    if value <= 0.0 {
                        return Err(format!("{}: must be greater than 0", here()));
                    }
                    n.multiple_of = Some(Multiple {
                        value,
                        exact: Decimal::from_str(&v.to_string())
                            .ok()
                            .filter(|d| !d.is_zero()),
                    });
                }
                "properties" => {
                    let props = v
                        .as_object()
                        .ok_or_else(|| format!("{}: must be an object", here()))?;
                    for (name, p) in props {
                        let child = self.node(p, &format!("{}/{name}", here()))?;
                        n.properties.push((name.clone(), child));
                    }
                }
                "required" => {
                    let a = v
                        .as_array()
                        .ok_or_else(|| format!("{}: must be an array", here()))?;
                    for r in a {
                        let r = r
                            .as_str()
                            .ok_or_else(|| format!("{}: {r} is not a string", here()))?;
                        n.required.push(r.to_string());
                    }
                }
                "additionalProperties" => n.additional_properties = self.extra(v, &here())?,
                "items" => {
                    n.items = match v {
                        Value::Array(a) => {
                            let mut tuple = Vec::with_capacity(a.len());
                            for (i, item) in a.iter().enumerate() {
                                tuple.push(self.node(item, &format!("{}/{i}", here()))?);
                            }
                            let extra = match obj.get("additionalItems") {
                                Some(x) => self.extra(x, &format!("{at}/additionalItems"))?,
                                None => Extra::Any,
                            };
                            Items::Tuple(tuple, extra)
                        }
                        one => Items::All(Box::new(self.node(one, &here())?)),
                    }
                }
                // Only applies beside an array of `items` (read there); else it has no effect.
                "additionalItems" => {
                    self.extra(v, &here())?;
                }
                other if ANNOTATIONS.contains(&other) => {}
                other => return Err(format!("{at}: unsupported keyword {other:?}")),
            }
        }
        Ok(n)
    }

    fn extra(&mut self, v: &Value, at: &str) -> Result<Extra, String> {
        Ok(match v {
            Value::Bool(true) => Extra::Any,
            Value::Bool(false) => Extra::Deny,
            s => Extra::Schema(Box::new(self.node(s, at)?)),
        })
    }

    /// Resolves a `$ref` (a JSON pointer into this schema) to its index in `defs`, compiling
    /// the target the first time (its slot is reserved first, so recursion terminates).
    fn reference(&mut self, r: &str, at: &str) -> Result<usize, String> {
        if let Some((_, i)) = self.refs.iter().find(|(s, _)| s == r) {
            return Ok(*i);
        }
        let pointer = r
            .strip_prefix('#')
            .ok_or_else(|| format!("{at}: only local $refs (#/…) are supported, not {r:?}"))?;
        let root = self.root;
        let target = root
            .pointer(pointer)
            .ok_or_else(|| format!("{at}: $ref {r:?} points to nothing"))?;
        let i = self.defs.len();
        self.defs.push(None);
        self.refs.push((r.to_string(), i));
        let node = self.node(target, r)?;
        self.defs[i] = Some(node);
        Ok(i)
    }
}

/// Of two lower (or upper) bounds, the one that admits less.
fn tighter(old: Option<Bound>, new: Bound, lower: bool) -> Bound {
    match old {
        None => new,
        Some(o) => {
            let stricter = if lower {
                new.value > o.value || (new.value == o.value && new.exclusive)
            } else {
                new.value < o.value || (new.value == o.value && new.exclusive)
            };
            if stricter {
                new
            } else {
                o
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Validation, while parsing: a `DeserializeSeed` carries the schema node down the document,
// so nothing is materialised and parsing stops at the first violation.

#[derive(Clone, Copy, Debug)]
enum Num {
    U(u64),
    I(i64),
    F(f64),
}

impl Num {
    fn as_f64(self) -> f64 {
        match self {
            Num::U(u) => u as f64,
            Num::I(i) => i as f64,
            Num::F(f) => f,
        }
    }

    /// The number as an exact decimal, from its shortest text (what the payload wrote).
    fn exact(self) -> Option<Decimal> {
        match self {
            Num::U(u) => Some(Decimal::from(u)),
            Num::I(i) => Some(Decimal::from(i)),
            Num::F(f) if f.is_finite() => Decimal::from_str(&f.to_string()).ok(),
            Num::F(_) => None,
        }
    }
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Num::U(u) => write!(f, "{u}"),
            Num::I(i) => write!(f, "{i}"),
            Num::F(x) => write!(f, "{x}"),
        }
    }
}

/// A value as the validator sees it when it starts reading it.
#[derive(Clone, Copy)]
enum Seen<'a> {
    Null,
    Bool(bool),
    Num(Num),
    Str(&'a str),
    Array,
    Object,
}

/// Longest string shown in a message, in characters.
const SHOW_CHARS: usize = 48;

impl fmt::Display for Seen<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Seen::Null => f.write_str("null"),
            Seen::Bool(b) => write!(f, "{b}"),
            Seen::Num(n) => write!(f, "{n}"),
            Seen::Str(s) => {
                let n = s.chars().count();
                if n <= SHOW_CHARS {
                    f.write_str(&serde_json::to_string(s).unwrap_or_default())
                } else {
                    let head: String = s.chars().take(SHOW_CHARS).collect();
                    let quoted = serde_json::to_string(&head).unwrap_or_default();
                    write!(f, "{}…\" ({n} characters)", &quoted[..quoted.len() - 1])
                }
            }
            Seen::Array => f.write_str("an array"),
            Seen::Object => f.write_str("an object"),
        }
    }
}

/// JSON equality with an `enum`/`const` value (scalars only: the compiler rejects others);
/// numbers by value, booleans not numbers.
fn equal(x: Seen, v: &Value) -> bool {
    match (x, v) {
        (Seen::Null, Value::Null) => true,
        (Seen::Bool(a), Value::Bool(b)) => a == *b,
        (Seen::Str(a), Value::String(b)) => a == b,
        (Seen::Num(a), Value::Number(b)) => match (a, b.as_u64(), b.as_i64()) {
            (Num::U(a), Some(b), _) => a == b,
            (Num::I(a), _, Some(b)) => a == b,
            (a, _, _) => b.as_f64() == Some(a.as_f64()),
        },
        _ => false,
    }
}

/// Where a value is: built on the stack while descending, rendered only for an error.
enum Path<'p> {
    Root,
    Key(&'p Path<'p>, &'p str),
    Index(&'p Path<'p>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Path::Root => f.write_str("$"),
            Path::Key(parent, k) => {
                write!(f, "{parent}")?;
                let plain = k
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if plain {
                    write!(f, ".{k}")
                } else {
                    write!(f, "[{}]", serde_json::to_string(k).unwrap_or_default())
                }
            }
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

fn type_names(bits: u8) -> String {
    let mut out = String::new();
    for (b, name) in TYPE_NAMES {
        if bits & b != 0 {
            if !out.is_empty() {
                out.push_str(" or ");
            }
            out.push_str(name);
        }
    }
    out
}

fn list(values: &[Value]) -> String {
    let mut out = String::from("[");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{v}");
    }
    out.push(']');
    out
}

/// RFC 3986 leniently: a scheme (`ALPHA *(ALPHA / DIGIT / "+" / "-" / ".")`), a colon, and
/// no white space or control characters.
fn is_uri(s: &str) -> bool {
    let Some((scheme, _)) = s.split_once(':') else {
        return false;
    };
    let mut cs = scheme.chars();
    cs.next().is_some_and(|c| c.is_ascii_alphabetic())
        && cs.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn is_multiple(x: Num, m: &Multiple) -> bool {
    if let (Some(md), Some(xd)) = (m.exact, x.exact()) {
        if let Some(r) = xd.checked_rem(md) {
            return r.is_zero();
        }
    }
    let q = x.as_f64() / m.value;
    q.is_finite() && (q - q.round()).abs() <= 1e-9 * q.abs().max(1.0)
}

/// `$ref` hops followed before giving up (only a cycle of `$ref`s could need more).
const MAX_REF_HOPS: usize = 64;

/// One validation: the schema, and the first violation once found.
struct Run<'s> {
    schema: &'s Schema,
    violation: RefCell<Option<String>>,
}

impl Run<'_> {
    /// Records the violation and aborts parsing (the error itself carries nothing).
    fn fail<E: de::Error>(&self, message: String) -> E {
        self.violation.borrow_mut().get_or_insert(message);
        E::custom("schema violation")
    }
}

/// Validates the value it deserializes against `node`.
struct Check<'a> {
    run: &'a Run<'a>,
    node: &'a Node,
    path: &'a Path<'a>,
}

impl<'a> Check<'a> {
    fn at(run: &'a Run<'a>, node: &'a Node, path: &'a Path<'a>) -> Check<'a> {
        Check { run, node, path }
    }

    /// The rules that apply to every value: type, enum, const; then the scalar's own.
    fn value<E: de::Error>(&self, x: Seen) -> Result<(), E> {
        let (n, path) = (self.node, self.path);
        if n.types != 0 && !self.run.schema.type_ok(n.types, x) {
            return Err(self.run.fail(format!(
                "{path}: {x} is not of type {}",
                type_names(n.types)
            )));
        }
        if let Some(values) = &n.enumeration {
            if !values.iter().any(|v| equal(x, v)) {
                return Err(self
                    .run
                    .fail(format!("{path}: {x} is not one of {}", list(values))));
            }
        }
        if let Some(c) = &n.constant {
            if !equal(x, c) {
                return Err(self.run.fail(format!("{path}: {x} is not {c} (const)")));
            }
        }
        let message = match x {
            Seen::Str(s) => check_string(n, s, x, path),
            Seen::Num(v) => check_number(n, v, path),
            _ => None,
        };
        match message {
            Some(m) => Err(self.run.fail(m)),
            None => Ok(()),
        }
    }
}

impl<'de> de::DeserializeSeed<'de> for Check<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(mut self, d: D) -> Result<(), D::Error> {
        let mut hops = 0;
        while let Some(r) = self.node.reference {
            hops += 1;
            if hops > MAX_REF_HOPS {
                return Err(self
                    .run
                    .fail(format!("{}: $ref cycle in the schema", self.path)));
            }
            self.node = &self.run.schema.defs[r];
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.value(Seen::Null)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<(), E> {
        self.value(Seen::Bool(b))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<(), E> {
        self.value(Seen::Num(Num::U(n)))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<(), E> {
        self.value(Seen::Num(Num::I(n)))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<(), E> {
        self.value(Seen::Num(Num::F(n)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.value(Seen::Str(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.value(Seen::Array)?;
        let (n, path, run) = (self.node, self.path, self.run);
        let mut count = 0usize;
        loop {
            let here = Path::Index(path, count);
            if n.max_items == Some(count as u64) {
                // One more item is one too many, whatever it is.
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    break;
                }
                return Err(run.fail(format!("{path}: more than {count} items (maxItems)")));
            }
            let item = match &n.items {
                Items::Any => None,
                Items::All(s) => Some(&**s),
                Items::Tuple(tuple, extra) => match (tuple.get(count), extra) {
                    (Some(s), _) => Some(s),
                    (None, Extra::Any) => None,
                    (None, Extra::Deny) => {
                        if seq.next_element::<IgnoredAny>()?.is_none() {
                            break;
                        }
                        return Err(run.fail(format!(
                            "{here}: additional item is not allowed (additionalItems: false)"
                        )));
                    }
                    (None, Extra::Schema(s)) => Some(&**s),
                },
            };
            let more = match item {
                Some(node) => seq.next_element_seed(Check::at(run, node, &here))?,
                None => seq.next_element::<IgnoredAny>()?.map(|_| ()),
            };
            if more.is_none() {
                break;
            }
            count += 1;
        }
        if let Some(min) = n.min_items.filter(|&m| (count as u64) < m) {
            return Err(run.fail(format!(
                "{path}: {count} items, fewer than {min} (minItems)"
            )));
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.value(Seen::Object)?;
        let (n, path, run) = (self.node, self.path, self.run);
        // Which required properties were seen (by index in `required`).
        let mut seen_small = 0u64;
        let mut seen_large = vec![
            false;
            if n.required.len() > 64 {
                n.required.len()
            } else {
                0
            }
        ];
        while let Some(Key(key)) = map.next_key()? {
            if let Some(i) = n.required.iter().position(|r| *r == key) {
                match seen_large.get_mut(i) {
                    Some(s) => *s = true,
                    None => seen_small |= 1 << i,
                }
            }
            let here = Path::Key(path, &key);
            let node = match n.properties.iter().find(|(name, _)| *name == key) {
                Some((_, p)) => Some(p),
                None => match &n.additional_properties {
                    Extra::Any => None,
                    Extra::Deny => {
                        let rule = "additionalProperties: false";
                        return Err(run.fail(format!(
                            "{here}: additional property is not allowed ({rule})"
                        )));
                    }
                    Extra::Schema(s) => Some(&**s),
                },
            };
            match node {
                Some(node) => map.next_value_seed(Check::at(run, node, &here))?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        for (i, r) in n.required.iter().enumerate() {
            let seen = match seen_large.get(i) {
                Some(s) => *s,
                None => seen_small & (1 << i) != 0,
            };
            if !seen {
                return Err(run.fail(format!(
                    "{path}: required property {} is missing",
                    serde_json::to_string(r).unwrap_or_default()
                )));
            }
        }
        Ok(())
    }
}

/// An object key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Key<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(s.to_string())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

impl Schema {
    fn type_ok(&self, bits: u8, x: Seen) -> bool {
        let t = match x {
            Seen::Null => T_NULL,
            Seen::Bool(_) => T_BOOLEAN,
            Seen::Num(Num::F(f)) => {
                // draft-06 counts 5.0 as an integer; draft-04 only 5.
                if self.draft == Draft::Six && f.is_finite() && f.fract() == 0.0 {
                    T_NUMBER | T_INTEGER
                } else {
                    T_NUMBER
                }
            }
            Seen::Num(_) => T_NUMBER | T_INTEGER,
            Seen::Str(_) => T_STRING,
            Seen::Array => T_ARRAY,
            Seen::Object => T_OBJECT,
        };
        bits & t != 0
    }
}

fn check_string(node: &Node, s: &str, x: Seen, path: &Path) -> Option<String> {
    if node.min_length.is_some() || node.max_length.is_some() {
        let n = s.chars().count() as u64;
        if let Some(max) = node.max_length.filter(|&m| n > m) {
            return Some(format!(
                "{path}: {x} is longer than {max} characters (maxLength)"
            ));
        }
        if let Some(min) = node.min_length.filter(|&m| n < m) {
            return Some(format!(
                "{path}: {x} is shorter than {min} characters (minLength)"
            ));
        }
    }
    match node.format {
        Some(Format::DateTime) if parse_rfc3339(s).is_err() => Some(format!(
            "{path}: {x} is not a date-time (RFC 3339 with an offset)"
        )),
        Some(Format::Uri) if !is_uri(s) => Some(format!("{path}: {x} is not a URI")),
        _ => None,
    }
}

fn check_number(node: &Node, x: Num, path: &Path) -> Option<String> {
    let v = x.as_f64();
    if let Some(b) = node.minimum {
        if b.exclusive && v <= b.value {
            return Some(format!(
                "{path}: {x} is not greater than {} (exclusiveMinimum)",
                b.value
            ));
        }
        if v < b.value {
            return Some(format!("{path}: {x} is less than {} (minimum)", b.value));
        }
    }
    if let Some(b) = node.maximum {
        if b.exclusive && v >= b.value {
            return Some(format!(
                "{path}: {x} is not less than {} (exclusiveMaximum)",
                b.value
            ));
        }
        if v > b.value {
            return Some(format!("{path}: {x} is greater than {} (maximum)", b.value));
        }
    }
    if let Some(m) = &node.multiple_of {
        if !is_multiple(x, m) {
            return Some(format!(
                "{path}: {x} is not a multiple of {} (multipleOf)",
                m.value
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::Instant;

    const D4: &str = r#""$schema": "http://json-schema.org/draft-04/schema#""#;
    const D6: &str = r#""$schema": "http://json-schema.org/draft-06/schema#""#;

    fn schema(draft: &str, body: &str) -> Schema {
        let text = format!("{{{draft}, {body}}}");
        Schema::compile("test", &text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// Asserts that every `ok` passes and every `(bad, message)` fails with exactly that message.
    fn check(s: &Schema, ok: &[&str], bad: &[(&str, &str)]) {
        for j in ok {
            assert_eq!(s.validate_str(j), Ok(()), "{j} should pass");
        }
        for (j, msg) in bad {
            assert_eq!(s.validate_str(j), Err(msg.to_string()), "{j}");
        }
    }

    #[test]
    fn type_single_and_arrays_of_types() {
        let s = schema(D4, r#""type": "string""#);
        check(
            &s,
            &[r#""x""#, r#""""#],
            &[
                ("5", "$: 5 is not of type string"),
                ("null", "$: null is not of type string"),
                ("{}", "$: an object is not of type string"),
                ("[1]", "$: an array is not of type string"),
            ],
        );
        let s = schema(D4, r#""type": ["string", "null"]"#);
        check(
            &s,
            &[r#""x""#, "null"],
            &[("true", "$: true is not of type null or string")],
        );
        let s = schema(D4, r#""type": "boolean""#);
        check(
            &s,
            &["true", "false"],
            &[("0", "$: 0 is not of type boolean")],
        );
        let s = schema(D4, r#""type": "object""#);
        check(&s, &["{}"], &[("[]", "$: an array is not of type object")]);
        let s = schema(D4, r#""type": "array""#);
        check(&s, &["[]"], &[("{}", "$: an object is not of type array")]);
    }

    #[test]
    fn integer_versus_number() {
        let s = schema(D4, r#""type": "integer""#);
        check(
            &s,
            &["0", "-3", "18446744073709551615"],
            &[
                ("1.5", "$: 1.5 is not of type integer"),
                // draft-04: an integer is written without a fraction.
                ("5.0", "$: 5 is not of type integer"),
                ("1e2", "$: 100 is not of type integer"),
                (r#""5""#, r#"$: "5" is not of type integer"#),
                ("true", "$: true is not of type integer"),
            ],
        );
        // draft-06: any number without a fractional part.
        let s = schema(D6, r#""type": "integer""#);
        check(
            &s,
            &["5", "5.0", "1e2"],
            &[("5.5", "$: 5.5 is not of type integer")],
        );
        let s = schema(D4, r#""type": "number""#);
        check(
            &s,
            &["5", "-5", "5.25", "1e-3"],
            &[(r#""5""#, r#"$: "5" is not of type number"#)],
        );
    }

    #[test]
    fn properties_required_and_additional_properties() {
        let s = schema(
            D4,
            r#""type": "object",
               "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
               "required": ["a", "b"],
               "additionalProperties": false"#,
        );
        check(
            &s,
            &[r#"{"a": 1, "b": "x"}"#, r#"{"b": "x", "a": 1}"#],
            &[
                (r#"{"b": "x"}"#, r#"$: required property "a" is missing"#),
                (r#"{"a": 1}"#, r#"$: required property "b" is missing"#),
                (
                    r#"{"a": 1, "b": "x", "c": 0}"#,
                    "$.c: additional property is not allowed (additionalProperties: false)",
                ),
                (
                    r#"{"a": "1", "b": "x"}"#,
                    r#"$.a: "1" is not of type integer"#,
                ),
            ],
        );
        // Without additionalProperties, unknown members pass; with a schema, they are checked.
        let s = schema(D4, r#""properties": {"a": {"type": "integer"}}"#);
        check(&s, &[r#"{"z": [1, 2]}"#, "7"], &[]);
        let s = schema(
            D6,
            r#""properties": {"a": {"type": "integer"}}, "additionalProperties": {"type": "string"}"#,
        );
        check(
            &s,
            &[r#"{"a": 1, "z": "ok"}"#],
            &[(r#"{"a": 1, "z": 2}"#, "$.z: 2 is not of type string")],
        );
        // additionalProperties on a string (as the OCPP enums have it) constrains nothing.
        let s = schema(D4, r#""type": "string", "additionalProperties": false"#);
        check(&s, &[r#""x""#], &[]);
    }

    #[test]
    fn enum_and_const() {
        let s = schema(D4, r#""type": "string", "enum": ["Wh", "kWh"]"#);
        check(
            &s,
            &[r#""Wh""#, r#""kWh""#],
            &[
                (r#""wh""#, r#"$: "wh" is not one of ["Wh", "kWh"]"#),
                ("null", "$: null is not of type string"),
            ],
        );
        let s = schema(D6, r#""enum": [1, "one", null, true]"#);
        check(
            &s,
            &["1", "1.0", r#""one""#, "null", "true"],
            &[
                ("2", r#"$: 2 is not one of [1, "one", null, true]"#),
                ("false", r#"$: false is not one of [1, "one", null, true]"#),
            ],
        );
        let s = schema(D6, r#""const": "Accepted""#);
        check(
            &s,
            &[r#""Accepted""#],
            &[
                (
                    r#""Rejected""#,
                    r#"$: "Rejected" is not "Accepted" (const)"#,
                ),
                (r#"{"a": 1}"#, r#"$: an object is not "Accepted" (const)"#),
            ],
        );
        let s = schema(D6, r#""const": 0"#);
        check(&s, &["0", "0.0", "-0"], &[("1", "$: 1 is not 0 (const)")]);
        // Objects and arrays as enum or const values are not supported (OCPP has none).
        for bad in [r#"{"const": {"a": 1}}"#, r#"{"enum": ["a", [1]]}"#] {
            assert!(Schema::compile("t", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn string_lengths_count_code_points() {
        let s = schema(D4, r#""type": "string", "minLength": 2, "maxLength": 4"#);
        check(
            &s,
            &[r#""ab""#, r#""abcd""#, r#""€€€€""#, r#""\u00e9\u00e9""#],
            &[
                (
                    r#""a""#,
                    r#"$: "a" is shorter than 2 characters (minLength)"#,
                ),
                (
                    r#""abcde""#,
                    r#"$: "abcde" is longer than 4 characters (maxLength)"#,
                ),
                (
                    r#""€€€€€""#,
                    r#"$: "€€€€€" is longer than 4 characters (maxLength)"#,
                ),
            ],
        );
        // Lengths only constrain strings.
        let s = schema(D4, r#""maxLength": 2"#);
        check(&s, &["12345", "[1, 2, 3]"], &[]);
        // Long values are shortened in messages.
        let s = schema(D4, r#""maxLength": 50"#);
        let long = format!("\"{}\"", "x".repeat(60));
        let err = s.validate_str(&long).unwrap_err();
        assert_eq!(
            err,
            format!(
                "$: \"{}…\" (60 characters) is longer than 50 characters (maxLength)",
                "x".repeat(SHOW_CHARS)
            )
        );
    }

    #[test]
    fn minimum_maximum_and_exclusive_bounds() {
        let s = schema(D6, r#""type": "number", "minimum": 0.0, "maximum": 100.0"#);
        check(
            &s,
            &["0", "0.0", "100", "55.5"],
            &[
                ("-0.5", "$: -0.5 is less than 0 (minimum)"),
                ("-1", "$: -1 is less than 0 (minimum)"),
                ("100.01", "$: 100.01 is greater than 100 (maximum)"),
            ],
        );
        // draft-04: booleans make the bounds exclusive.
        let s = schema(
            D4,
            r#""minimum": 0, "exclusiveMinimum": true, "maximum": 10, "exclusiveMaximum": true"#,
        );
        check(
            &s,
            &["0.1", "9.9", r#""not a number""#],
            &[
                ("0", "$: 0 is not greater than 0 (exclusiveMinimum)"),
                ("10", "$: 10 is not less than 10 (exclusiveMaximum)"),
            ],
        );
        // draft-06: they are bounds of their own.
        let s = schema(D6, r#""exclusiveMinimum": 1, "exclusiveMaximum": 2.5"#);
        check(
            &s,
            &["1.5", "2"],
            &[
                ("1", "$: 1 is not greater than 1 (exclusiveMinimum)"),
                ("2.5", "$: 2.5 is not less than 2.5 (exclusiveMaximum)"),
            ],
        );
        // Both a minimum and an exclusive minimum: the stricter wins.
        let s = schema(D6, r#""minimum": 3, "exclusiveMinimum": 3"#);
        check(
            &s,
            &["3.1"],
            &[("3", "$: 3 is not greater than 3 (exclusiveMinimum)")],
        );
    }

    #[test]
    fn multiple_of_is_exact_in_decimal() {
        let s = schema(D4, r#""type": "number", "multipleOf": 0.1"#);
        check(
            &s,
            // 1.6 / 0.1 and 0.3 / 0.1 are not whole numbers in binary floating point.
            &[
                "1.6",
                "0.3",
                "16.1",
                "7",
                "0",
                "-2.2",
                "11000.0",
                "123456789.9",
            ],
            &[
                ("16.05", "$: 16.05 is not a multiple of 0.1 (multipleOf)"),
                ("0.01", "$: 0.01 is not a multiple of 0.1 (multipleOf)"),
                ("1e-7", "$: 0.0000001 is not a multiple of 0.1 (multipleOf)"),
            ],
        );
        let s = schema(D4, r#""multipleOf": 2"#);
        check(
            &s,
            &["4", "-8", "4.0", "18446744073709551614"],
            &[("3", "$: 3 is not a multiple of 2 (multipleOf)")],
        );
        // Beyond what a decimal holds, a float comparison with a relative tolerance.
        let s = schema(D4, r#""multipleOf": 0.5"#);
        check(
            &s,
            &["1e40", "1.5"],
            &[("0.25", "$: 0.25 is not a multiple of 0.5 (multipleOf)")],
        );
        assert!(Schema::compile("t", r#"{"multipleOf": 0}"#).is_err());
    }

    #[test]
    fn items_and_item_counts() {
        let s = schema(
            D4,
            r#""type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3"#,
        );
        check(
            &s,
            &["[1]", "[1, 2, 3]"],
            &[
                ("[]", "$: 0 items, fewer than 1 (minItems)"),
                ("[1, 2, 3, 4]", "$: more than 3 items (maxItems)"),
                ("[1, \"2\", 3.5]", r#"$[1]: "2" is not of type integer"#),
            ],
        );
        // additionalItems beside a single items schema (as OCPP writes it) changes nothing.
        let s = schema(
            D6,
            r#""type": "array", "additionalItems": false, "items": {"type": "string"}"#,
        );
        check(
            &s,
            &[r#"["a", "b", "c"]"#],
            &[("[1]", "$[0]: 1 is not of type string")],
        );
        // A tuple with additionalItems.
        let s = schema(
            D4,
            r#""items": [{"type": "integer"}, {"type": "string"}], "additionalItems": false"#,
        );
        check(
            &s,
            &[r#"[1, "a"]"#, "[1]"],
            &[
                (
                    r#"[1, "a", null]"#,
                    "$[2]: additional item is not allowed (additionalItems: false)",
                ),
                (r#"["a"]"#, r#"$[0]: "a" is not of type integer"#),
            ],
        );
        let s = schema(
            D4,
            r#""items": [{"type": "integer"}], "additionalItems": {"type": "null"}"#,
        );
        check(
            &s,
            &["[1, null, null]"],
            &[("[1, 2]", "$[1]: 2 is not of type null")],
        );
    }

    #[test]
    fn refs_to_definitions() {
        let s = schema(
            D6,
            r##""definitions": {
                 "IdTokenType": {"type": "object", "additionalProperties": false,
                   "properties": {"idToken": {"type": "string", "maxLength": 3},
                                  "type": {"$ref": "#/definitions/IdTokenEnumType"}},
                   "required": ["idToken", "type"]},
                 "IdTokenEnumType": {"type": "string", "enum": ["Central", "Local"]},
                 "Tree": {"type": "object", "properties": {"child": {"$ref": "#/definitions/Tree"},
                          "n": {"type": "integer"}}}
               },
               "type": "object",
               "properties": {"idToken": {"$ref": "#/definitions/IdTokenType", "type": "string"},
                              "tree": {"$ref": "#/definitions/Tree"}},
               "required": ["idToken"]"##,
        );
        check(
            &s,
            &[
                r#"{"idToken": {"idToken": "abc", "type": "Local"}}"#,
                r#"{"idToken": {"idToken": "a", "type": "Central"}, "tree": {"child": {"child": {"n": 1}}}}"#,
            ],
            &[
                (
                    r#"{"idToken": {"idToken": "abc", "type": "Remote"}}"#,
                    r#"$.idToken.type: "Remote" is not one of ["Central", "Local"]"#,
                ),
                (
                    r#"{"idToken": {"idToken": "abcd", "type": "Local"}}"#,
                    r#"$.idToken.idToken: "abcd" is longer than 3 characters (maxLength)"#,
                ),
                (
                    r#"{"idToken": {"idToken": "a", "type": "Local"}, "tree": {"child": {"child": {"n": "1"}}}}"#,
                    r#"$.tree.child.child.n: "1" is not of type integer"#,
                ),
            ],
        );
        for bad in [
            r#"{"$ref": "other.json#/definitions/X"}"#,
            r##"{"$ref": "#/definitions/Missing"}"##,
        ] {
            assert!(Schema::compile("t", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_date_time_and_uri() {
        let s = schema(D4, r#""type": "string", "format": "date-time""#);
        check(
            &s,
            &[
                r#""2026-01-05T08:00:00Z""#,
                r#""2026-01-05T08:00:00.123+02:00""#,
                r#""2026-01-05 08:00:00z""#,
            ],
            &[
                (
                    r#""noon""#,
                    r#"$: "noon" is not a date-time (RFC 3339 with an offset)"#,
                ),
                (
                    r#""2026-01-05T08:00:00""#,
                    r#"$: "2026-01-05T08:00:00" is not a date-time (RFC 3339 with an offset)"#,
                ),
                (
                    r#""2026-02-30T08:00:00Z""#,
                    r#"$: "2026-02-30T08:00:00Z" is not a date-time (RFC 3339 with an offset)"#,
                ),
            ],
        );
        let s = schema(D4, r#""format": "uri""#);
        check(
            &s,
            &[
                r#""https://fw.example.com/v1.2/image.bin""#,
                r#""ftp://user@host/x""#,
                r#""urn:ocpp:x""#,
                "42",
            ],
            &[
                (
                    r#""fw.example.com/x""#,
                    r#"$: "fw.example.com/x" is not a URI"#,
                ),
                (r#""http://a b""#, r#"$: "http://a b" is not a URI"#),
                (r#""1http://x""#, r#"$: "1http://x" is not a URI"#),
            ],
        );
    }

    #[test]
    fn annotations_are_ignored_and_unknown_keywords_rejected() {
        let s = schema(
            D6,
            r#""$id": "urn:x", "title": "T", "description": "d", "comment": "c", "javaType": "J",
               "tsEnumNames": ["A"], "default": "A", "examples": ["A"], "enum": ["A"]"#,
        );
        check(&s, &[r#""A""#], &[]);
        for bad in [
            r#"{"pattern": "^a$"}"#,
            r#"{"oneOf": [{}]}"#,
            r#"{"format": "email"}"#,
            r#"{"type": "decimal"}"#,
            r#"{"$schema": "http://json-schema.org/draft-07/schema#"}"#,
            r#"{"properties": {"a": {"uniqueItems": true}}}"#,
        ] {
            let err = Schema::compile("t", bad).unwrap_err();
            assert!(err.starts_with("t: "), "{err}");
        }
    }

    #[test]
    fn the_first_error_in_document_order_is_reported() {
        let s = schema(
            D4,
            r#""type": "object", "additionalProperties": false,
               "properties": {"a": {"type": "integer"}, "b": {"type": "integer"},
                              "list": {"type": "array", "items": {"type": "object",
                                "properties": {"x": {"type": "integer"}}, "required": ["x"]}}},
               "required": ["a"]"#,
        );
        check(
            &s,
            &[],
            &[
                // Members in the order the payload writes them, not the schema's order.
                (
                    r#"{"b": "1", "a": "2"}"#,
                    r#"$.b: "1" is not of type integer"#,
                ),
                (
                    r#"{"a": "2", "b": "1"}"#,
                    r#"$.a: "2" is not of type integer"#,
                ),
                (
                    r#"{"zz": 1, "a": "2"}"#,
                    "$.zz: additional property is not allowed (additionalProperties: false)",
                ),
                // A missing property is known at the end of its object, after the members.
                (r#"{"b": "1"}"#, r#"$.b: "1" is not of type integer"#),
                (r#"{"b": 1}"#, r#"$: required property "a" is missing"#),
                (
                    r#"{"a": 1, "list": [{"x": 1}, {"y": 2}, {"x": "3"}]}"#,
                    r#"$.list[1]: required property "x" is missing"#,
                ),
            ],
        );
        // A repeated key: every occurrence is checked.
        check(
            &s,
            &[r#"{"a": 1, "a": 2}"#],
            &[(
                r#"{"a": "x", "a": 1}"#,
                r#"$.a: "x" is not of type integer"#,
            )],
        );
        // Too few items are known at the end of the array, too many as soon as there are.
        let s = schema(
            D4,
            r#""items": {"type": "integer"}, "minItems": 3, "maxItems": 3"#,
        );
        check(
            &s,
            &[],
            &[
                (r#"[1, "2"]"#, r#"$[1]: "2" is not of type integer"#),
                ("[1, 2]", "$: 2 items, fewer than 3 (minItems)"),
                (r#"[1, 2, 3, "4"]"#, "$: more than 3 items (maxItems)"),
            ],
        );
        // Keys that are not identifiers are quoted in paths.
        let s = schema(D4, r#""additionalProperties": {"type": "integer"}"#);
        check(
            &s,
            &[],
            &[(
                r#"{"odd key\"": "x"}"#,
                r#"$["odd key\""]: "x" is not of type integer"#,
            )],
        );
        assert!(s.validate_str("{").unwrap_err().starts_with("$: not JSON"));
    }

    // ---- the official schemas -------------------------------------------------------------

    #[test]
    fn every_official_schema_compiles_quickly() {
        let set = SchemaSet::new();
        let t = Instant::now();
        let n = set.compile_all().unwrap();
        let took = t.elapsed();
        println!("compiled {n} schemas in {took:?}");
        assert_eq!(n, 78 + 128);
        let files: Vec<_> = SchemaSet::files().collect();
        assert_eq!(files.len(), n);
        let keys: Vec<_> = files.iter().map(|(v, stem)| (folder(*v), *stem)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted, unique");
        // Every action has its request and response schema, and is found in its version.
        for (v, stem) in &files {
            let action = match v {
                OcppVersion::V201 => stem.strip_suffix("Request"),
                OcppVersion::V16 => Some(*stem).filter(|s| !s.ends_with("Response")),
            };
            let Some(action) = action else { continue };
            assert!(
                set.get(*v, action, MessageKind::Response).is_some(),
                "{stem}"
            );
            let first = if set
                .get(OcppVersion::V16, action, MessageKind::Request)
                .is_some()
            {
                OcppVersion::V16
            } else {
                OcppVersion::V201
            };
            assert_eq!(version_of_action(action), Some(first), "{stem}");
        }
        // … and every 1.6 action evflow knows is among them.
        for a in super::super::v16::ACTIONS {
            assert!(
                set.get(OcppVersion::V16, a, MessageKind::Request).is_some(),
                "{a}"
            );
        }
        assert_eq!(
            version_of_action("TransactionEvent"),
            Some(OcppVersion::V201)
        );
        assert_eq!(version_of_action("MakeCoffee"), None);
        assert_eq!(version_of_action("HeartbeatResponse"), None);
        assert!(set
            .get(OcppVersion::V201, "Heartbeat", MessageKind::Request)
            .is_some());
    }

    #[test]
    fn official_schema_messages() {
        let set = SchemaSet::new();
        let v16 = OcppVersion::V16;
        let meter = r#"{"connectorId": 1, "meterValue": [{"timestamp": "2026-01-05T08:00:00Z",
            "sampledValue": [{"value": "1", "unit": "Wh"}, {"value": "20", "measurand": "Temperature", "unit": "Celsuis"}]}]}"#;
        let err = set.validate_call(v16, "MeterValues", meter).unwrap_err();
        assert!(
            err.starts_with(r#"$.meterValue[0].sampledValue[1].unit: "Celsuis" is not one of ["Wh", "kWh", "varh""#),
            "{err}"
        );
        assert_eq!(set.validate_call(v16, "Heartbeat", "{}"), Ok(()));
        assert_eq!(
            set.validate_call(v16, "Heartbeat", r#"{"x": 1}"#),
            Err("$.x: additional property is not allowed (additionalProperties: false)".into())
        );
        assert_eq!(
            set.validate_call(v16, "StartTransaction", r#"{"connectorId": 1, "idTag": "T", "meterStart": 10.5, "timestamp": "2026-01-05T08:00:00Z"}"#),
            Err("$.meterStart: 10.5 is not of type integer".into())
        );
        assert_eq!(
            set.validate_call_result(
                v16,
                "StartTransaction",
                r#"{"transactionId": 5, "idTagInfo": {"status": "Accepted"}}"#
            ),
            Ok(())
        );
        assert_eq!(
            set.validate_call(v16, "SetChargingProfile", r#"{"connectorId": 1, "csChargingProfiles": {"chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Absolute", "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 1.6}, {"startPeriod": 60, "limit": 16.05}]}}}"#),
            Err("$.csChargingProfiles.chargingSchedule.chargingSchedulePeriod[1].limit: 16.05 is not a multiple of 0.1 (multipleOf)".into())
        );
        let v201 = OcppVersion::V201;
        assert_eq!(
            set.validate_call(
                v201,
                "Heartbeat",
                r#"{"customData": {"vendorId": "x", "more": 1}}"#
            ),
            Ok(())
        );
        assert_eq!(
            set.validate_call(v201, "Authorize", r#"{"idToken": {"idToken": "A", "type": "Card"}}"#),
            Err(r#"$.idToken.type: "Card" is not one of ["Central", "eMAID", "ISO14443", "ISO15693", "KeyCode", "Local", "MacAddress", "NoAuthorization"]"#.into())
        );
        assert_eq!(
            set.validate_call(v201, "NotifyEVChargingNeeds", r#"{"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "DC", "dcChargingParameters": {"evMaxCurrent": 1, "evMaxVoltage": 1, "stateOfCharge": 101}}}"#),
            Err("$.chargingNeeds.dcChargingParameters.stateOfCharge: 101 is greater than 100 (maximum)".into())
        );
        assert_eq!(
            set.validate_call(v16, "MakeCoffee", "{}"),
            Err(r#"OCPP 1.6 has no request schema for "MakeCoffee""#.into())
        );
    }

    /// Frames captured from real chargers, with the verdict of mobilityhouse's `ocpp` (Python
    /// `jsonschema`): strict validation must agree on every one.
    #[test]
    fn real_frames_get_the_reference_validators_verdict() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/data/ocpp/real-frames.jsonl"
        );
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{path}: {e} (shared/ must be beside the repository)"));
        let set = SchemaSet::new();
        // (device, message id) → action, to check CALLRESULTs against the response schema.
        let mut calls: HashMap<(String, String), String> = HashMap::new();
        let (mut valid, mut invalid) = (0, 0);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let rec: Value = serde_json::from_str(line).unwrap();
            let frame = rec["frame"].as_array().expect("a frame");
            let device = rec["device"].as_str().unwrap_or("").to_string();
            let id = frame[1].as_str().unwrap().to_string();
            let verdict = match frame[0].as_u64() {
                Some(2) => {
                    let action = frame[2].as_str().unwrap();
                    calls.insert((device, id), action.to_string());
                    set.validate_call(OcppVersion::V16, action, &frame[3].to_string())
                }
                Some(3) => {
                    let action = calls.get(&(device, id)).expect("the CALL precedes");
                    set.validate_call_result(OcppVersion::V16, action, &frame[2].to_string())
                }
                other => panic!("unexpected frame type {other:?}"),
            };
            let expected = rec["schema_valid_v16"].as_bool().expect("schema_valid_v16");
            assert_eq!(verdict.is_ok(), expected, "{line}\n→ {verdict:?}");
            if let Err(ours) = verdict {
                invalid += 1;
                // Same offending value as the reference's message (`'Error' is not one of …`).
                for theirs in rec["schema_errors"].as_array().into_iter().flatten() {
                    let theirs = theirs.as_str().unwrap();
                    if let Some(value) =
                        theirs.strip_prefix('\'').and_then(|t| t.split('\'').next())
                    {
                        assert!(ours.contains(&format!("\"{value}\"")), "{ours} vs {theirs}");
                    }
                    if theirs.contains("is not one of") {
                        assert!(ours.contains("is not one of"), "{ours} vs {theirs}");
                    }
                }
            } else {
                valid += 1;
            }
        }
        assert!(valid > 0 && invalid > 0, "{valid} valid, {invalid} invalid");
    }

    #[test]
    fn check_call_dead_letters_with_the_action_and_version() {
        use OcppVersion::{V16, V201};
        let set = SchemaSet::new();
        let faulted = r#"{"connectorId": 0, "errorCode": "Error", "status": "Faulted"}"#;
        let err = check_call(&set, V16, "StatusNotification", faulted).unwrap_err();
        assert_eq!(err.reason, DeadLetterReason::SchemaViolation);
        assert!(
            err.message.starts_with(
                r#"StatusNotification (OCPP 1.6): $.errorCode: "Error" is not one of ["#
            ),
            "{}",
            err.message
        );
        // Not OCPP at all: left to the decoder (unknown_action).
        assert!(check_call(&set, V16, "MakeCoffee", "{}").is_ok());
        assert!(check_call(&set, V201, "MakeCoffee", "{}").is_ok());
        // An OCPP action the frame's version does not have.
        let err = check_call(&set, V16, "TransactionEvent", "{}").unwrap_err();
        assert_eq!(
            err.message,
            "TransactionEvent (OCPP 1.6): not an action of OCPP 1.6"
        );
        let err = check_call(&set, V201, "StartTransaction", "{}").unwrap_err();
        assert_eq!(
            err.message,
            "StartTransaction (OCPP 2.0.1): not an action of OCPP 2.0.1"
        );
        // The same action, by version.
        let custom = r#"{"customData": {"vendorId": "v"}}"#;
        assert!(check_call(&set, V201, "Heartbeat", custom).is_ok());
        assert!(check_call(&set, V16, "Heartbeat", custom).is_err());
        let err = check_call(&set, V201, "TransactionEvent", "{}").unwrap_err();
        assert!(
            err.message
                .starts_with("TransactionEvent (OCPP 2.0.1): $: required property"),
            "{}",
            err.message
        );
    }
}
