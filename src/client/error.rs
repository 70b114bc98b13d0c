//! What can go wrong talking to a server, worded for the person at the terminal: the common
//! cases (nothing listening, wrong key) get a sentence that says what to do.

/// A failed exchange with an OpenAI endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The client could not be set up (bad URL, TLS backend).
    #[error("{0}")]
    Setup(String),

    /// Nothing answered at the address.
    #[error("cannot reach the server at {url}: {detail} (is it running, and is --base-url right?)")]
    Unreachable { url: String, detail: String },

    /// 401/403: the key is missing or wrong.
    #[error(
        "the server at {url} rejected the API key (HTTP {status}): pass the right one with --api-key{message}"
    )]
    Unauthorized {
        url: String,
        status: u16,
        message: String,
    },

    /// Any other non-2xx status, with the server's own error message.
    #[error("HTTP {status} from {url}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },

    /// The response started but the connection broke before it ended.
    #[error("stream broken: {0}")]
    Broken(String),

    /// A response that is not what the OpenAI API sends.
    #[error("{0}")]
    Protocol(String),

    /// No answer in time.
    #[error("timed out: {0}")]
    Timeout(String),
}

impl ClientError {
    pub(super) fn from_send(url: &str, e: reqwest::Error) -> Self {
        if e.is_timeout() {
            return ClientError::Timeout(format!("{url}: {e}"));
        }
        if e.is_connect() {
            return ClientError::Unreachable {
                url: url.to_owned(),
                detail: root_cause(&e),
            };
        }
        ClientError::Broken(format!("{url}: {}", root_cause(&e)))
    }

    /// Passes a 2xx response through; turns anything else into an error carrying the server's
    /// `error.message` (OpenAI's error shape) or, failing that, the start of the body.
    pub(super) async fn check_status(
        url: &str,
        response: reqwest::Response,
    ) -> Result<reqwest::Response, ClientError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let message = server_message(&body);
        let code = status.as_u16();
        if code == 401 || code == 403 {
            let message = if message.is_empty() {
                String::new()
            } else {
                format!(" ({message})")
            };
            return Err(ClientError::Unauthorized {
                url: url.to_owned(),
                status: code,
                message,
            });
        }
        Err(ClientError::Status {
            url: url.to_owned(),
            status: code,
            message,
        })
    }

    /// A short label for counting failures by kind in a benchmark report.
    pub fn kind(&self) -> String {
        match self {
            ClientError::Setup(_) => "setup".into(),
            ClientError::Unreachable { .. } => "unreachable".into(),
            ClientError::Unauthorized { status, .. } | ClientError::Status { status, .. } => {
                format!("HTTP {status}")
            }
            ClientError::Broken(_) => "broken stream".into(),
            ClientError::Protocol(_) => "bad response".into(),
            ClientError::Timeout(_) => "timeout".into(),
        }
    }
}

/// The most specific message in an error chain ("Connection refused" rather than "error
/// sending request").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current = e;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

fn server_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let from_json = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"))
            .or_else(|| v.get("error"))
            .and_then(|m| m.as_str().map(str::to_owned))
    });
    from_json.unwrap_or_else(|| body.trim().chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::server_message;

    #[test]
    fn the_server_message_is_taken_from_openai_error_bodies() {
        assert_eq!(
            server_message(r#"{"error":{"message":"bad key","type":"auth"}}"#),
            "bad key"
        );
        assert_eq!(server_message(r#"{"error":"plain"}"#), "plain");
        assert_eq!(server_message("  oops \n"), "oops");
    }
}
