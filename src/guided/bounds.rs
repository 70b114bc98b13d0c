//! How large a JSON schema the server agrees to compile.
//!
//! llguidance's JSON compiler recurses once per property of an object (it builds the ordered
//! sequence of optional properties recursively) and once per level of nesting, so a schema's
//! widest object and its depth decide the stack its compilation needs; the total size decides
//! the time it takes. Bounding all three before compiling lets the compile thread's stack be
//! sized for the largest schema admitted (see [`compile_stack_bytes`]), and keeps a 75 KB
//! request from aborting the process with a stack overflow, which no `catch_unwind` catches.

use serde_json::Value;

/// The bounds a schema must keep (`--max-schema-properties`, `--max-schema-nodes`,
/// `--max-schema-depth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaLimits {
    /// Members of any one object and items of any one array in a schema: properties, `enum`
    /// values, `anyOf`/`oneOf` branches, `required` names.
    pub max_properties: usize,
    /// JSON values in the schema (every object, array, string, number...), summed over all
    /// the schemas of one request (a forced tool call embeds every tool's).
    pub max_nodes: usize,
    /// Nesting of JSON values in a schema (`{"properties": {"a": {}}}` is depth 3).
    pub max_depth: usize,
}

impl Default for SchemaLimits {
    fn default() -> Self {
        Self {
            max_properties: 256,
            max_nodes: 20_000,
            max_depth: 64,
        }
    }
}

/// Stack for a compile thread: enough for a schema at the largest bounds with a fourfold
/// margin, and never under 8 MiB (a main thread's default; only the pages touched are used).
/// Measured with llguidance 1.9 on x86-64, optimized, by `tests/engine/guided_bounds.rs`'s
/// `stack_probe`: the smallest stack that compiles 256 properties at depth 64 is 192 KiB,
/// 2,000 properties 1 MiB, 7,000 properties 4 MiB (2 MiB overflows), 16 properties at depth 128
/// 384 KiB: about 0.5 KiB a property of the widest object and 3 KiB a level of nesting.
pub fn compile_stack_bytes(limits: &SchemaLimits) -> usize {
    const BASE: usize = 64 << 10;
    const PER_PROPERTY: usize = 640;
    const PER_LEVEL: usize = 3 << 10;
    const MARGIN: usize = 4;
    let need = BASE
        .saturating_add(limits.max_properties.saturating_mul(PER_PROPERTY))
        .saturating_add(limits.max_depth.saturating_mul(PER_LEVEL));
    need.saturating_mul(MARGIN).max(8 << 20)
}

/// Counts a request's schemas against the limits: call [`Self::check`] once per schema.
#[derive(Debug)]
pub struct SchemaBudget<'a> {
    limits: &'a SchemaLimits,
    nodes: usize,
}

impl<'a> SchemaBudget<'a> {
    pub fn new(limits: &'a SchemaLimits) -> Self {
        Self { limits, nodes: 0 }
    }

    /// Refuses `schema` when it (or the request's schemas so far together) passes a bound;
    /// the message names the flag and the place in the schema.
    pub fn check(&mut self, schema: &Value) -> Result<(), String> {
        let mut path = Vec::new();
        self.walk(schema, 1, &mut path)
    }

    /// Recursion is bounded by `max_depth` (checked before descending), and serde_json's
    /// parser already refuses documents nested deeper than 128.
    fn walk(&mut self, value: &Value, depth: usize, path: &mut Vec<String>) -> Result<(), String> {
        let limits = self.limits;
        self.nodes += 1;
        if self.nodes > limits.max_nodes {
            return Err(format!(
                "the JSON schema is too large: it has more than {} values (objects, arrays, \
                 strings, numbers) in all; at most {} are allowed (--max-schema-nodes); \
                 simplify the schema or split the task",
                limits.max_nodes, limits.max_nodes
            ));
        }
        if depth > limits.max_depth {
            return Err(format!(
                "the JSON schema is nested too deeply at {}: more than {} levels; at most {} \
                 are allowed (--max-schema-depth); flatten the schema",
                pointer(path),
                limits.max_depth,
                limits.max_depth
            ));
        }
        let width = match value {
            Value::Object(o) => o.len(),
            Value::Array(a) => a.len(),
            _ => return Ok(()),
        };
        if width > limits.max_properties {
            return Err(format!(
                "the JSON schema has {width} entries in one {} at {}; at most {} are allowed \
                 in any object or list of a schema (properties, enum values, anyOf branches; \
                 --max-schema-properties); split the object into nested objects or shorten \
                 the list",
                if value.is_object() { "object" } else { "list" },
                pointer(path),
                limits.max_properties
            ));
        }
        match value {
            Value::Object(o) => {
                for (k, v) in o {
                    path.push(k.clone());
                    self.walk(v, depth + 1, path)?;
                    path.pop();
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    path.push(i.to_string());
                    self.walk(v, depth + 1, path)?;
                    path.pop();
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// A JSON pointer (RFC 6901) for error messages; `/` is the root.
fn pointer(path: &[String]) -> String {
    if path.is_empty() {
        return "/".into();
    }
    path.iter()
        .map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wide(n: usize) -> Value {
        let props: serde_json::Map<String, Value> = (0..n)
            .map(|i| (format!("p{i}"), json!({"type": "string"})))
            .collect();
        json!({"type": "object", "properties": props})
    }

    fn deep(levels: usize) -> Value {
        let mut s = json!({"type": "string"});
        for _ in 0..levels {
            s = json!({"type": "object", "properties": {"a": s}});
        }
        s
    }

    #[test]
    fn wide_objects_are_refused_naming_the_flag_and_the_place() {
        let limits = SchemaLimits::default();
        assert!(SchemaBudget::new(&limits).check(&wide(256)).is_ok());
        let e = SchemaBudget::new(&limits).check(&wide(257)).unwrap_err();
        assert!(e.contains("--max-schema-properties"), "{e}");
        assert!(
            e.contains("257 entries in one object at /properties"),
            "{e}"
        );
        let e = SchemaBudget::new(&limits)
            .check(&json!({"enum": (0..300).collect::<Vec<_>>()}))
            .unwrap_err();
        assert!(e.contains("one list at /enum"), "{e}");
    }

    #[test]
    fn depth_is_bounded() {
        let limits = SchemaLimits {
            max_depth: 10,
            ..SchemaLimits::default()
        };
        // Each level is an object and its `properties` (2 JSON levels); the innermost
        // schema and its `type` are 2 more.
        assert!(SchemaBudget::new(&limits).check(&deep(4)).is_ok());
        let e = SchemaBudget::new(&limits).check(&deep(5)).unwrap_err();
        assert!(e.contains("--max-schema-depth"), "{e}");
        assert!(e.contains("/properties/a/properties/a"), "{e}");
    }

    #[test]
    fn nodes_are_summed_over_a_requests_schemas() {
        let limits = SchemaLimits {
            max_nodes: 500,
            ..SchemaLimits::default()
        };
        // 1 + 1 + 1 + 200 × 2 = 403 values.
        let mut budget = SchemaBudget::new(&limits);
        assert!(budget.check(&wide(200)).is_ok());
        let e = budget.check(&wide(200)).unwrap_err();
        assert!(e.contains("--max-schema-nodes"), "{e}");
    }

    #[test]
    fn the_compile_stack_grows_with_the_bounds() {
        let default = compile_stack_bytes(&SchemaLimits::default());
        assert_eq!(default, 8 << 20);
        let wide = SchemaLimits {
            max_properties: 20_000,
            ..SchemaLimits::default()
        };
        // 7,000 properties needed 4 MiB; 20,000 get over four times their share.
        assert!(compile_stack_bytes(&wide) > 4 * ((20_000 * 4) << 20) / 7_000);
    }

    #[test]
    fn pointers_escape() {
        assert_eq!(pointer(&["a/b".into(), "c~d".into()]), "/a~1b/c~0d");
        assert_eq!(pointer(&[]), "/");
    }
}
