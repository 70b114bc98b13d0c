//! The conversation sent with every request: the system prompt (kept across `clear`), then
//! alternating user and assistant turns. Reasoning is never stored: Qwen3's template drops it
//! from earlier turns anyway, and sending it back only costs prompt tokens.

use serde_json::{Value, json};

#[derive(Debug, Clone, Default)]
pub struct History {
    system: Option<String>,
    turns: Vec<Value>,
}

impl History {
    pub fn new(system: Option<String>) -> Self {
        Self {
            system: system.filter(|s| !s.trim().is_empty()),
            turns: Vec::new(),
        }
    }

    /// Starts over with only the system prompt.
    pub fn clear(&mut self) {
        self.turns.clear();
    }

    pub fn push_user(&mut self, text: &str) {
        self.turns.push(json!({"role": "user", "content": text}));
    }

    pub fn push_assistant(&mut self, text: &str) {
        self.turns
            .push(json!({"role": "assistant", "content": text}));
    }

    /// Takes back the last user message (its answer failed), so the next question does not
    /// follow an unanswered one.
    pub fn pop_user(&mut self) {
        if self.turns.last().and_then(|m| m.get("role")) == Some(&json!("user")) {
            self.turns.pop();
        }
    }

    /// Turns so far, without the system prompt.
    pub fn len(&self) -> usize {
        self.turns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.turns.is_empty()
    }

    /// The `messages` array of the next request.
    pub fn messages(&self) -> Value {
        let system = self
            .system
            .iter()
            .map(|s| json!({"role": "system", "content": s}));
        Value::Array(system.chain(self.turns.iter().cloned()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_keeps_the_system_prompt() {
        let mut h = History::new(Some("be brief".into()));
        h.push_user("hi");
        h.push_assistant("hello");
        assert_eq!(h.messages().as_array().map(Vec::len), Some(3));
        h.clear();
        assert_eq!(
            h.messages(),
            json!([{"role": "system", "content": "be brief"}])
        );
    }

    #[test]
    fn a_failed_turn_is_taken_back() {
        let mut h = History::new(None);
        h.push_user("q");
        h.pop_user();
        assert!(h.is_empty());
        h.push_user("q");
        h.push_assistant("a");
        h.pop_user();
        assert_eq!(h.len(), 2);
    }
}
