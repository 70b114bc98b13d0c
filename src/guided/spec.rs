//! What a request asks its output to conform to.

/// An output constraint enforced token by token while sampling.
#[derive(Debug, Clone, PartialEq)]
pub enum GuidedDecoding {
    /// Any JSON object (`response_format: {"type": "json_object"}`).
    JsonObject,
    /// JSON valid under this JSON Schema (`response_format: {"type": "json_schema"}`).
    JsonSchema(serde_json::Value),
    /// A Lark grammar in llguidance's dialect (may embed `%json{...}` schemas); used for
    /// forced tool calls.
    Lark(String),
}
