//! Parameter values: the Coder format writes every value as raw text, and the tool's JSON schema
//! says what JSON value it stands for (as vLLM's `qwen3_coder` parser reads them).
//!
//! A property declared `string` (or not declared at all) is the text itself. `integer`,
//! `number`, `boolean`, `null`, `object` and `array` are converted when the text is such a
//! value; text that is not stays a string, so a model's slip never fails the response. A
//! property with several types (`"type": [..]`, or `anyOf`/`oneOf` members) takes the first
//! declared type the text converts to.

use std::collections::HashMap;
use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;
use serde_json::{Map, Value};

/// The declared properties of each function a request offers, by function name.
#[derive(Debug, Clone, Default)]
pub struct ToolSchemas {
    functions: HashMap<String, Map<String, Value>>,
}

impl ToolSchemas {
    /// From `(name, parameters schema)` pairs. A schema without `properties` is taken as the
    /// property map itself, as vLLM does for tools that list their parameters bare.
    pub fn new<'a>(tools: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Self {
        let functions = tools
            .into_iter()
            .map(|(name, schema)| {
                let properties = match schema.get("properties") {
                    Some(Value::Object(p)) => p.clone(),
                    _ => schema.as_object().cloned().unwrap_or_default(),
                };
                (name.to_owned(), properties)
            })
            .collect();
        Self { functions }
    }

    /// The schema of parameter `param` of `function`, if declared.
    pub fn property(&self, function: &str, param: &str) -> Option<&Value> {
        self.functions.get(function)?.get(param)
    }
}

/// A JSON type a property may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
    Null,
    Object,
    Array,
}

impl ParamType {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "string" => Self::String,
            "integer" => Self::Integer,
            "number" => Self::Number,
            "boolean" => Self::Boolean,
            "null" => Self::Null,
            "object" => Self::Object,
            "array" => Self::Array,
            _ => return None,
        })
    }
}

/// The types a property declares, in order; empty when it declares none we know (its value is
/// then a string).
pub fn declared_types(schema: Option<&Value>) -> Vec<ParamType> {
    let Some(schema) = schema else {
        return Vec::new();
    };
    let mut types = Vec::new();
    match schema.get("type") {
        Some(Value::String(t)) => types.extend(ParamType::from_name(t)),
        Some(Value::Array(ts)) => types.extend(
            ts.iter()
                .filter_map(Value::as_str)
                .filter_map(ParamType::from_name),
        ),
        _ => {
            for key in ["anyOf", "oneOf"] {
                if let Some(Value::Array(members)) = schema.get(key) {
                    for member in members {
                        for t in declared_types(Some(member)) {
                            if !types.contains(&t) {
                                types.push(t);
                            }
                        }
                    }
                }
            }
        }
    }
    types
}

/// Whether a value of these types is always the text itself, so it can be streamed as it is
/// written instead of held until it ends.
pub fn is_plain_string(types: &[ParamType]) -> bool {
    types.iter().all(|&t| t == ParamType::String)
}

/// Whether a property's value is written as free text: it may be a string, or declares no type
/// this format converts (either way the text may be taken as a string). Other values are
/// written as JSON text.
pub fn is_text_valued(property: Option<&Value>) -> bool {
    let types = declared_types(property);
    types.is_empty() || types.contains(&ParamType::String)
}

/// The JSON value `text` stands for under `types` (see the module docs).
pub fn convert(text: &str, types: &[ParamType]) -> Value {
    types
        .iter()
        .find_map(|&t| convert_as(text, t))
        .unwrap_or_else(|| Value::String(text.to_owned()))
}

fn convert_as(text: &str, t: ParamType) -> Option<Value> {
    let trimmed = text.trim();
    match t {
        ParamType::String => Some(Value::String(text.to_owned())),
        // Any typed value may be written as `null`, as vLLM reads it.
        _ if trimmed.eq_ignore_ascii_case("null") => Some(Value::Null),
        ParamType::Null => None,
        ParamType::Integer => integer(trimmed),
        ParamType::Number => integer(trimmed).or_else(|| {
            let x: f64 = trimmed.parse().ok().filter(|x: &f64| x.is_finite())?;
            // A whole number is written as an integer, as vLLM does (`3.0` → `3`).
            if x.fract() == 0.0 && x.abs() < 9.0e15 {
                Some(Value::from(x as i64))
            } else {
                serde_json::Number::from_f64(x).map(Value::Number)
            }
        }),
        ParamType::Boolean => match trimmed.to_ascii_lowercase().as_str() {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        ParamType::Object => serde_json::from_str::<Value>(trimmed)
            .ok()
            .filter(Value::is_object),
        ParamType::Array => serde_json::from_str::<Value>(trimmed)
            .ok()
            .filter(Value::is_array),
    }
}

fn integer(text: &str) -> Option<Value> {
    text.parse::<i64>()
        .map(Value::from)
        .or_else(|_| text.parse::<u64>().map(Value::from))
        .ok()
}

/// `value` as JSON text with the separators Python's `json.dumps` writes (`", "` and `": "`),
/// which is how vLLM writes these arguments and how Qwen's templates render them back.
pub fn to_json_text(value: &Value) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, SpacedFormatter);
    // Writing a `Value` to memory cannot fail; the fallback only keeps this total.
    if value.serialize(&mut ser).is_err() {
        return value.to_string();
    }
    String::from_utf8(out).unwrap_or_else(|_| value.to_string())
}

/// `text` as the inside of a JSON string literal (no quotes). Escaping is per character, so
/// the escapes of consecutive pieces concatenate to the escape of the whole.
pub fn escape_fragment(text: &str) -> String {
    let quoted = Value::String(text.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

/// `", "` between items and `": "` after keys, otherwise compact.
struct SpacedFormatter;

impl Formatter for SpacedFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }
}
