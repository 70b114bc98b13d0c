//! The labels of `tealight:http_requests_total`, from fixed sets only. The client chooses the
//! method and path it sends; a series per distinct value would let anyone grow `/metrics`, and
//! the process's memory, without bound (one series per made-up method name).

use axum::extract::MatchedPath;
use axum::http::{Method, StatusCode};

/// The standard methods by name; anything else is `other`.
pub fn method(method: &Method) -> &'static str {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::PATCH,
        Method::CONNECT,
        Method::TRACE,
    ];
    STANDARD
        .iter()
        .find(|m| *m == method)
        .map_or("other", |m| m.as_str())
}

/// The route template that matched (the router's own, a fixed set), or `unmatched`.
pub fn route(matched: Option<&MatchedPath>) -> String {
    matched.map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned())
}

/// The status code: the server's own responses, a fixed set.
pub fn status(status: StatusCode) -> String {
    status.as_u16().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_standard_set_share_one_label() {
        assert_eq!(method(&Method::GET), "GET");
        assert_eq!(method(&Method::PATCH), "PATCH");
        for made_up in ["FOO", "get", "XYZZY123", "PROPFIND"] {
            let m = Method::from_bytes(made_up.as_bytes()).unwrap();
            assert_eq!(method(&m), "other", "{made_up}");
        }
        assert_eq!(route(None), "unmatched");
        assert_eq!(status(StatusCode::METHOD_NOT_ALLOWED), "405");
    }
}
