//! The rules a generation request must satisfy, stated once. The engine enforces them at
//! `submit`; the HTTP layer calls the same functions first, so a bad request is refused with a
//! message naming its own field before anything is queued.

use crate::error::{Error, Result};

/// A token id from a client: it must name a row of the model's vocabulary.
pub fn token_id(id: i64, vocab_size: usize, param: &str) -> Result<u32> {
    u32::try_from(id)
        .ok()
        .filter(|&id| (id as usize) < vocab_size)
        .ok_or_else(|| {
            Error::invalid(
                param,
                format!("token id {id} is out of the vocabulary (size {vocab_size})"),
            )
        })
}

/// Every id of a list, checked by [`token_id`].
pub fn token_ids(
    ids: impl IntoIterator<Item = i64>,
    vocab_size: usize,
    param: &str,
) -> Result<Vec<u32>> {
    ids.into_iter()
        .map(|id| token_id(id, vocab_size, param))
        .collect()
}

/// A prompt must hold at least one token and leave room for one generated token.
pub fn prompt_fits(prompt_len: usize, max_model_len: usize, param: &str) -> Result<()> {
    if prompt_len == 0 {
        return Err(Error::invalid(param, "the prompt is empty"));
    }
    if prompt_len >= max_model_len {
        return Err(Error::ContextLength {
            message: format!(
                "This model's maximum context length is {max_model_len} tokens. However, your \
                 request has {prompt_len} input tokens, which leaves no room for a completion."
            ),
            param: Some(param.to_owned()),
            tokens: prompt_len,
            max_model_len,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_must_name_a_vocabulary_row() {
        assert_eq!(token_ids([0, 9], 10, "p").unwrap(), vec![0, 9]);
        for bad in [-1, 10, i64::MAX] {
            let err = token_id(bad, 10, "stop_token_ids").unwrap_err();
            assert!(err.to_string().contains(&bad.to_string()), "{err}");
        }
    }

    #[test]
    fn prompts_must_leave_room_for_a_token() {
        assert!(prompt_fits(0, 8, "prompt").is_err());
        assert!(prompt_fits(7, 8, "prompt").is_ok());
        let err = prompt_fits(8, 8, "messages").unwrap_err();
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
}
