//! `item_reference` input items: each is replaced by the stored item it names (an item of a
//! response still in the store: its input or its output). A reference to nothing stored is left
//! as it is and refused when the prompt is built, so no reference is dropped in silence.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::Value;

use crate::api::response_store::ResponseStore;

/// `input` with its references resolved. Each stored conversation is parsed at most once.
/// Blocking work (the parses): run it on the pool.
pub fn resolve<'a>(store: &ResponseStore, input: Vec<Cow<'a, Value>>) -> Vec<Cow<'a, Value>> {
    let mut parsed: HashMap<String, Vec<Value>> = HashMap::new();
    input
        .into_iter()
        .map(|item| {
            let reference = (item.get("type").and_then(Value::as_str) == Some("item_reference"))
                .then(|| item.get("id").and_then(Value::as_str))
                .flatten();
            let Some(id) = reference else {
                return item;
            };
            let Some(holder) = store.holding_item(id) else {
                return item;
            };
            let items = parsed
                .entry(holder.id.clone())
                .or_insert_with(|| holder.conversation_items());
            match items
                .iter()
                .find(|i| i.get("id").and_then(Value::as_str) == Some(id))
            {
                Some(found) => Cow::Owned(found.clone()),
                None => item,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::response_store::{StoreLimits, StoredResponse};
    use bytes::Bytes;
    use serde_json::json;

    #[test]
    fn references_become_the_stored_items() {
        let store = ResponseStore::new(StoreLimits::default());
        let said =
            json!({"type": "message", "id": "msg_1", "role": "assistant", "content": "hello"});
        store.insert(StoredResponse {
            id: "resp_1".into(),
            response: Bytes::from_static(b"{}"),
            conversation: Bytes::from(json!([said]).to_string()),
            item_ids: vec!["msg_1".into()],
        });
        let input = [
            json!({"type": "item_reference", "id": "msg_1", "payload": [1, 2, 3]}),
            json!({"type": "item_reference", "id": "msg_2"}),
            json!({"role": "user", "content": "hi"}),
        ];
        let resolved = resolve(&store, input.iter().map(Cow::Borrowed).collect());
        assert_eq!(*resolved[0], said, "replaced, payload and all");
        assert_eq!(*resolved[1], input[1], "unknown: left to be refused");
        assert_eq!(*resolved[2], input[2]);
    }
}
