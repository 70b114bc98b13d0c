//! `truncation: "auto"`: a conversation too long for the context loses its oldest items (the
//! chained-onto history first, then the request's `input`; `instructions` always stay) until
//! the prompt and the output asked for fit — OpenAI's semantics, instead of a 400.
//!
//! The cut is searched for (a prompt's length only grows with the items it keeps), so a long
//! conversation costs a logarithmic number of renders; a cut never starts the conversation at a
//! tool's output, whose call would then be missing.

use serde_json::Value;

use super::input::Conversation;
use crate::api::error::{ApiError, ApiResult, ContextOverflow};

/// Where the conversation may start: its first item, or any later item but a tool's output.
pub fn cut_points(conversation: &Conversation<'_>) -> Vec<usize> {
    (0..conversation.len())
        .filter(|&i| {
            let (item, _) = conversation.item(i);
            i == 0
                || !matches!(
                    item.get("type").and_then(Value::as_str),
                    Some("function_call_output" | "custom_tool_call_output")
                )
        })
        .collect()
}

/// The prompt of the earliest cut that fits `max_model_len` with `reserve` tokens to spare,
/// and the cut. `render(skip)` renders the conversation without its first `skip` items and
/// says how many tokens it holds. When not even the last item fits, that attempt's error.
pub fn fit<P>(
    cuts: &[usize],
    reserve: usize,
    max_model_len: usize,
    mut render: impl FnMut(usize) -> ApiResult<(P, usize)>,
) -> ApiResult<(P, usize)> {
    let mut attempt = |skip: usize| -> ApiResult<Result<P, ApiError>> {
        match render(skip) {
            Ok((prompt, tokens)) if tokens.saturating_add(reserve) <= max_model_len => {
                Ok(Ok(prompt))
            }
            Ok((_, tokens)) => {
                let tokens = tokens.saturating_add(reserve);
                Ok(Err(ApiError::context_length(
                    "input",
                    format!(
                        "This model's maximum context length is {max_model_len} tokens. However, \
                         the last input item alone needs {tokens} tokens (with the output), even \
                         after truncation dropped every earlier item."
                    ),
                    ContextOverflow {
                        tokens,
                        max_model_len,
                    },
                )))
            }
            Err(e) if e.overflow.is_some() => Ok(Err(e)),
            Err(e) => Err(e),
        }
    };
    let (Some(&first), Some(&last)) = (cuts.first(), cuts.last()) else {
        return Err(ApiError::invalid("input", "input is empty"));
    };
    if let Ok(prompt) = attempt(first)? {
        return Ok((prompt, first));
    }
    let mut best = match attempt(last)? {
        Ok(prompt) => (prompt, last),
        Err(e) => return Err(e),
    };
    // Invariant: cuts[lo] does not fit, cuts[hi] does.
    let (mut lo, mut hi) = (0, cuts.len() - 1);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match attempt(cuts[mid])? {
            Ok(prompt) => {
                best = (prompt, cuts[mid]);
                hi = mid;
            }
            Err(_) => lo = mid,
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::borrow::Cow;

    /// Items of 10 tokens each; the prompt is their sum plus 5 for the instructions.
    fn tokens(n_items: usize, skip: usize) -> ApiResult<(usize, usize)> {
        Ok((skip, 5 + 10 * (n_items - skip)))
    }

    #[test]
    fn the_oldest_items_go_until_it_fits() {
        let cuts: Vec<usize> = (0..10).collect();
        assert_eq!(fit(&cuts, 1, 200, |s| tokens(10, s)).unwrap().1, 0);
        // 105 + 1 > 100: one item goes (95 + 1 fits).
        assert_eq!(fit(&cuts, 1, 100, |s| tokens(10, s)).unwrap().1, 1);
        // Room for the 30 output tokens asked for: 35 + 30 ≤ 66.
        assert_eq!(fit(&cuts, 30, 66, |s| tokens(10, s)).unwrap().1, 7);
        let err = fit(&cuts, 1, 12, |s| tokens(10, s)).unwrap_err();
        assert_eq!(err.overflow.map(|o| o.max_model_len), Some(12));
        assert_eq!(err.body()["error"]["code"], "context_length_exceeded");
    }

    #[test]
    fn other_errors_are_not_swallowed() {
        let cuts = [0, 1];
        let err = fit(&cuts, 1, 100, |_| -> ApiResult<(usize, usize)> {
            Err(ApiError::invalid("input[0]", "bad"))
        })
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("input[0]"));
    }

    #[test]
    fn a_cut_never_orphans_a_tool_output() {
        let input = [
            json!({"role": "user", "content": "a"}),
            json!({"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}),
            json!({"type": "function_call_output", "call_id": "c", "output": "x"}),
            json!({"role": "user", "content": "b"}),
        ];
        let conversation = Conversation {
            history: Vec::new(),
            input: input.iter().map(Cow::Borrowed).collect(),
        };
        assert_eq!(cut_points(&conversation), [0, 1, 3]);
    }
}
