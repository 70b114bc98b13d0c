//! The rules a generation request must satisfy, stated once. The engine enforces them at
//! `submit`; the HTTP layer calls the same functions first, so a bad request is refused before
//! anything is queued. Errors say which [`RequestPart`] is at fault; the API names its field.

use crate::error::{Error, RequestPart, Result};

/// A token id from a client (in `part`): it must name a row of the model's vocabulary.
pub fn token_id(id: i64, vocab_size: usize, part: RequestPart) -> Result<u32> {
    u32::try_from(id)
        .ok()
        .filter(|&id| (id as usize) < vocab_size)
        .ok_or_else(|| {
            Error::invalid(
                part,
                format!("token id {id} is out of the vocabulary (size {vocab_size})"),
            )
        })
}

/// Every id of a list, checked by [`token_id`].
pub fn token_ids(
    ids: impl IntoIterator<Item = i64>,
    vocab_size: usize,
    part: RequestPart,
) -> Result<Vec<u32>> {
    ids.into_iter()
        .map(|id| token_id(id, vocab_size, part))
        .collect()
}

/// A prompt must hold at least one token and leave room for one generated token.
pub fn prompt_fits(prompt_len: usize, max_model_len: usize) -> Result<()> {
    if prompt_len == 0 {
        return Err(Error::invalid(RequestPart::Prompt, "the prompt is empty"));
    }
    if prompt_len >= max_model_len {
        return Err(Error::ContextLength {
            part: RequestPart::Prompt,
            message: format!(
                "This model's maximum context length is {max_model_len} tokens. However, your \
                 request has {prompt_len} input tokens, which leaves no room for a completion."
            ),
            tokens: prompt_len,
            max_model_len,
        });
    }
    Ok(())
}

/// The prompt of a prefill-only (pooling) request: at least one token, and within the context
/// (it generates nothing, so it may fill it).
pub fn input_fits(prompt_len: usize, max_model_len: usize) -> Result<()> {
    if prompt_len == 0 {
        return Err(Error::invalid(RequestPart::Prompt, "the input is empty"));
    }
    if prompt_len > max_model_len {
        return Err(Error::ContextLength {
            part: RequestPart::Prompt,
            message: format!(
                "This model's maximum context length is {max_model_len} tokens. However, your \
                 input has {prompt_len} tokens. Please reduce the length of the input."
            ),
            tokens: prompt_len,
            max_model_len,
        });
    }
    Ok(())
}

/// A client's output limit: at least 1, and with the prompt within the context. Checked
/// arithmetic: any 64-bit value gets an answer, never a wrap.
pub fn completion_fits(requested: i64, prompt_len: usize, max_model_len: usize) -> Result<usize> {
    if requested < 1 {
        return Err(Error::out_of_range(
            RequestPart::OutputLimit,
            format!("must be at least 1, got {requested}."),
        ));
    }
    let total = usize::try_from(requested)
        .ok()
        .and_then(|m| m.checked_add(prompt_len));
    match total {
        Some(total) if total <= max_model_len => Ok(total - prompt_len),
        _ => {
            let tokens = i128::from(requested) + prompt_len as i128;
            Err(Error::ContextLength {
                part: RequestPart::OutputLimit,
                message: format!(
                    "This model's maximum context length is {max_model_len} tokens. However, \
                     you requested {tokens} tokens ({prompt_len} in the input, {requested} in the \
                     completion). Please reduce the length of the input or the completion."
                ),
                tokens: usize::try_from(tokens).unwrap_or(usize::MAX),
                max_model_len,
            })
        }
    }
}

/// A request's output limit under the server-wide cap (`max_new_tokens` of the served
/// generation config): the smaller of the two, the cap when the request sets none.
pub fn cap_output(requested: Option<usize>, server_cap: Option<usize>) -> Option<usize> {
    match (requested, server_cap) {
        (Some(r), Some(c)) => Some(r.min(c)),
        (r, c) => r.or(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_must_name_a_vocabulary_row() {
        assert_eq!(
            token_ids([0, 9], 10, RequestPart::Prompt).unwrap(),
            vec![0, 9]
        );
        for bad in [-1, 10, i64::MAX] {
            let err = token_id(bad, 10, RequestPart::StopTokenIds).unwrap_err();
            assert!(err.to_string().contains(&bad.to_string()), "{err}");
        }
    }

    #[test]
    fn prompts_must_leave_room_for_a_token() {
        assert!(prompt_fits(0, 8).is_err());
        assert!(prompt_fits(7, 8).is_ok());
        let err = prompt_fits(8, 8).unwrap_err();
        assert!(
            matches!(
                err,
                Error::ContextLength {
                    tokens: 8,
                    max_model_len: 8,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("maximum context length is 8"),
            "{err}"
        );
    }
    #[test]
    fn pooled_inputs_may_fill_the_context_but_not_pass_it() {
        assert!(input_fits(0, 8).is_err());
        assert!(input_fits(8, 8).is_ok());
        let err = input_fits(9, 8).unwrap_err();
        assert_eq!(err.request_part(), Some(RequestPart::Prompt));
        assert!(err.to_string().contains("input has 9 tokens"), "{err}");
    }

    #[test]
    fn max_tokens_beyond_any_integer_width_is_refused_not_wrapped() {
        assert_eq!(completion_fits(5, 3, 8).unwrap(), 5);
        for bad in [i64::MAX, i64::MAX - 2, 6] {
            let err = completion_fits(bad, 3, 8).unwrap_err();
            assert!(
                err.to_string().contains("maximum context length is 8"),
                "{bad}: {err}"
            );
        }
        for bad in [0, -1, i64::MIN] {
            let err = completion_fits(bad, 3, 8).unwrap_err();
            assert!(err.to_string().contains("at least 1"), "{bad}: {err}");
        }
        let err = completion_fits(i64::MAX, 3, 8).unwrap_err();
        assert!(
            err.to_string().contains("9223372036854775810 tokens"),
            "{err}"
        );
    }

    #[test]
    fn the_server_cap_bounds_every_request_and_defaults_the_rest() {
        assert_eq!(cap_output(None, Some(8)), Some(8));
        assert_eq!(cap_output(Some(100), Some(8)), Some(8));
        assert_eq!(cap_output(Some(3), Some(8)), Some(3));
        assert_eq!(cap_output(Some(3), None), Some(3));
        assert_eq!(cap_output(None, None), None);
    }
}
