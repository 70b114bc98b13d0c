//! The HTTP API's refusals over real HTTP: auth, every bad input with its status and error
//! shape, oversized bodies, overload, and cancellation when a client goes away.

use crate::http_client;

use http_client::*;
use serde_json::{Value, json};
use std::io::BufRead;
use std::time::{Duration, Instant};

#[test]
fn auth_and_open_routes() {
    let s = server();
    for path in ["/health", "/version", "/metrics", "/ping"] {
        let r = s.get_with_key(path, None);
        assert_eq!(r.status, 200, "{path} needs no key");
    }
    assert_eq!(
        s.get_with_key("/version", None).json()["version"],
        env!("CARGO_PKG_VERSION")
    );
    let r = s.get_with_key("/v1/models", None);
    assert_error(&r, 401, "AuthenticationError", None);
    let r = s.get_with_key("/v1/models", Some("wrong-key"));
    assert_error(&r, 401, "AuthenticationError", None);
    let r = s.get_with_key("/v1/models", Some(KEY));
    assert_eq!(r.status, 200);
    let models = r.json();
    assert_eq!(models["object"], "list");
    let data = models["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["id"], "tiny");
    assert_eq!(data[1]["id"], "tiny-alias");
    for m in data {
        assert_eq!(m["object"], "model");
        assert_eq!(m["owned_by"], "tealight");
        assert_eq!(m["max_model_len"], 4096);
        assert!(m["created"].is_i64() && m["root"].is_string());
    }
    let r = s.get_with_key("/tokenize", None);
    assert_eq!(r.status, 401, "tokenize needs the key");
}

/// Each bad input gets the right status, type and param, and the server keeps answering.
#[test]
fn bad_inputs_table() {
    let s = server();
    let chat = "/v1/chat/completions";
    let msgs = hello();
    let cases: Vec<(&str, Value, u16, &str, Option<&str>)> = vec![
        (chat, json!({}), 400, "BadRequestError", Some("messages")),
        (
            chat,
            json!({"messages": "hi"}),
            400,
            "BadRequestError",
            Some("messages"),
        ),
        (
            chat,
            json!({"messages": []}),
            400,
            "BadRequestError",
            Some("messages"),
        ),
        (
            chat,
            json!({"messages": [{"content": "no role"}]}),
            400,
            "BadRequestError",
            Some("messages"),
        ),
        (
            chat,
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
            400,
            "BadRequestError",
            Some("messages"),
        ),
        (
            chat,
            json!({"messages": msgs, "model": "nope"}),
            404,
            "NotFoundError",
            Some("model"),
        ),
        (
            chat,
            json!({"messages": msgs, "temperature": -1}),
            400,
            "BadRequestError",
            Some("temperature"),
        ),
        (
            chat,
            json!({"messages": msgs, "temperature": 2.5}),
            400,
            "BadRequestError",
            Some("temperature"),
        ),
        (
            chat,
            json!({"messages": msgs, "temperature": "hot"}),
            400,
            "BadRequestError",
            Some("temperature"),
        ),
        (
            chat,
            json!({"messages": msgs, "top_p": 0}),
            400,
            "BadRequestError",
            Some("top_p"),
        ),
        (
            chat,
            json!({"messages": msgs, "top_p": 1.5}),
            400,
            "BadRequestError",
            Some("top_p"),
        ),
        (
            chat,
            json!({"messages": msgs, "top_k": -2}),
            400,
            "BadRequestError",
            Some("top_k"),
        ),
        (
            chat,
            json!({"messages": msgs, "min_p": 2}),
            400,
            "BadRequestError",
            Some("min_p"),
        ),
        (
            chat,
            json!({"messages": msgs, "presence_penalty": 3}),
            400,
            "BadRequestError",
            Some("presence_penalty"),
        ),
        (
            chat,
            json!({"messages": msgs, "frequency_penalty": -3}),
            400,
            "BadRequestError",
            Some("frequency_penalty"),
        ),
        (
            chat,
            json!({"messages": msgs, "repetition_penalty": 0}),
            400,
            "BadRequestError",
            Some("repetition_penalty"),
        ),
        (
            chat,
            json!({"messages": msgs, "max_tokens": 0}),
            400,
            "BadRequestError",
            Some("max_tokens"),
        ),
        (
            chat,
            json!({"messages": msgs, "max_completion_tokens": -5}),
            400,
            "BadRequestError",
            Some("max_completion_tokens"),
        ),
        (
            chat,
            json!({"messages": msgs, "max_tokens": 100000}),
            400,
            "BadRequestError",
            Some("max_tokens"),
        ),
        (
            chat,
            json!({"messages": msgs, "n": 0}),
            400,
            "BadRequestError",
            Some("n"),
        ),
        (
            chat,
            json!({"messages": msgs, "n": 17}),
            400,
            "BadRequestError",
            Some("n"),
        ),
        (
            chat,
            json!({"messages": msgs, "stop": vec!["x"; 17]}),
            400,
            "BadRequestError",
            Some("stop"),
        ),
        (
            chat,
            json!({"messages": msgs, "stop": 5}),
            400,
            "BadRequestError",
            Some("stop"),
        ),
        (
            chat,
            json!({"messages": msgs, "logprobs": true, "top_logprobs": 21}),
            400,
            "BadRequestError",
            Some("top_logprobs"),
        ),
        (
            chat,
            json!({"messages": msgs, "top_logprobs": 2}),
            400,
            "BadRequestError",
            Some("top_logprobs"),
        ),
        (
            chat,
            json!({"messages": msgs, "logit_bias": {"abc": 1}}),
            400,
            "BadRequestError",
            Some("logit_bias"),
        ),
        (
            chat,
            json!({"messages": msgs, "logit_bias": {"999999999": 1}}),
            400,
            "BadRequestError",
            Some("logit_bias"),
        ),
        (
            chat,
            json!({"messages": msgs, "stop_token_ids": [-1]}),
            400,
            "BadRequestError",
            Some("stop_token_ids"),
        ),
        (
            chat,
            json!({"messages": msgs, "min_tokens": 10, "max_tokens": 5}),
            400,
            "BadRequestError",
            Some("min_tokens"),
        ),
        (
            chat,
            json!({"messages": msgs, "stream": "yes"}),
            400,
            "BadRequestError",
            Some("stream"),
        ),
        (
            chat,
            json!({"messages": msgs, "stream_options": {"include_usage": 1}}),
            400,
            "BadRequestError",
            Some("stream_options.include_usage"),
        ),
        (
            chat,
            json!({"messages": msgs, "tool_choice": "required"}),
            400,
            "BadRequestError",
            Some("tool_choice"),
        ),
        (
            chat,
            json!({"messages": msgs, "tools": [weather_tool()], "tool_choice": "sometimes"}),
            400,
            "BadRequestError",
            Some("tool_choice"),
        ),
        (
            chat,
            json!({"messages": msgs, "tools": [weather_tool()], "tool_choice": {"type": "function", "function": {"name": "other"}}}),
            400,
            "BadRequestError",
            Some("tool_choice"),
        ),
        (
            chat,
            json!({"messages": msgs, "tools": [{"type": "function", "function": {}}]}),
            400,
            "BadRequestError",
            Some("tools[0]"),
        ),
        (
            chat,
            json!({"messages": msgs, "response_format": {"type": "xml"}}),
            400,
            "BadRequestError",
            Some("response_format"),
        ),
        (
            chat,
            json!({"messages": msgs, "response_format": {"type": "json_schema"}}),
            400,
            "BadRequestError",
            Some("response_format"),
        ),
        (
            chat,
            json!({"messages": msgs, "continue_final_message": true}),
            400,
            "BadRequestError",
            Some("continue_final_message"),
        ),
        (
            chat,
            json!({"messages": [{"role": "user", "content": "x ".repeat(5000)}]}),
            400,
            "BadRequestError",
            Some("messages"),
        ),
        (
            "/v1/completions",
            json!({}),
            400,
            "BadRequestError",
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"prompt": [-1]}),
            400,
            "BadRequestError",
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"prompt": [[1, 2], [999999999]]}),
            400,
            "BadRequestError",
            Some("prompt"),
        ),
        // The shared generation fields are a second view of the body: a wrong type there is
        // still named, on both routes.
        (
            "/v1/completions",
            json!({"prompt": "x", "n": "two"}),
            400,
            "BadRequestError",
            Some("n"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "stop_token_ids": [1, "x"]}),
            400,
            "BadRequestError",
            Some("stop_token_ids[1]"),
        ),
        (
            chat,
            json!({"messages": msgs, "logit_bias": {"1": "x"}}),
            400,
            "BadRequestError",
            Some("logit_bias.1"),
        ),
        (
            "/v1/completions",
            json!({"prompt": []}),
            400,
            "BadRequestError",
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "suffix": "y"}),
            400,
            "BadRequestError",
            Some("suffix"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "logprobs": 21}),
            400,
            "BadRequestError",
            Some("logprobs"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "best_of": 3}),
            400,
            "BadRequestError",
            Some("best_of"),
        ),
        (
            "/tokenize",
            json!({}),
            400,
            "BadRequestError",
            Some("prompt"),
        ),
        (
            "/detokenize",
            json!({"tokens": [-5]}),
            400,
            "BadRequestError",
            Some("tokens"),
        ),
    ];
    for (path, body, status, kind, param) in cases {
        let r = s.post(path, &body);
        assert_error(&r, status, kind, param);
    }
    // Bodies that are not JSON, wrong content types, methods and routes.
    assert_error(
        &s.post_raw(chat, Some("application/json"), b"{not json"),
        400,
        "BadRequestError",
        None,
    );
    assert_error(
        &s.post_raw(chat, Some("application/json"), b""),
        400,
        "BadRequestError",
        None,
    );
    assert_error(
        &s.post_raw(chat, Some("application/json"), b"[1, 2]"),
        400,
        "BadRequestError",
        None,
    );
    assert_error(
        &s.post_raw(chat, Some("text/plain"), b"{}"),
        400,
        "BadRequestError",
        None,
    );
    let no_ct = s.post_raw(
        chat,
        None,
        json!({"messages": msgs, "max_tokens": 1})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(
        no_ct.status, 200,
        "a body without Content-Type is read as JSON"
    );
    let r = s.method("GET", chat);
    assert_error(&r, 405, "MethodNotAllowedError", None);
    assert_eq!(r.header("allow"), Some("POST"));
    assert_error(
        &s.method("DELETE", "/v1/models"),
        405,
        "MethodNotAllowedError",
        None,
    );
    assert_error(&s.get("/v1/nothing"), 404, "NotFoundError", None);
    assert_error(&too_large(s, 33 << 20), 413, "RequestTooLargeError", None);
    // Unknown fields are ignored.
    let r = s.post(
        chat,
        &json!({"messages": msgs, "max_tokens": 1, "frobnicate": {"x": 1},
        "user": "u1", "parallel_tool_calls": false}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // Still healthy.
    assert_eq!(s.get("/health").status, 200);
}

/// The engine refuses request parts (the output limit, a sampling value, the prompt); each API
/// tells the client in its own field names, in `param` and in the message.
#[test]
fn engine_refusals_name_each_apis_own_fields() {
    let s = server();
    let msgs = hello();
    let cases = [
        (
            "/v1/chat/completions",
            json!({"messages": msgs, "max_completion_tokens": 0}),
            "max_completion_tokens",
            "max_completion_tokens must be at least 1, got 0.",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": msgs, "max_tokens": 0}),
            "max_tokens",
            "max_tokens must be at least 1, got 0.",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": msgs, "logprobs": true, "top_logprobs": 21}),
            "top_logprobs",
            "top_logprobs must be between 0 and 20, got 21.",
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "logprobs": 21}),
            "logprobs",
            "logprobs must be between 0 and 20, got 21.",
        ),
        (
            "/v1/completions",
            json!({"prompt": [[5, 999999999]]}),
            "prompt",
            "token id 999999999 is out of the vocabulary",
        ),
        (
            "/v1/responses",
            json!({"input": "x", "max_output_tokens": 0}),
            "max_output_tokens",
            "max_output_tokens must be at least 1, got 0.",
        ),
        (
            "/v1/responses",
            json!({"input": "x", "top_p": 0}),
            "top_p",
            "top_p must be in (0, 1], got 0.",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": msgs, "stop_token_ids": [999999999]}),
            "stop_token_ids",
            "token id 999999999 is out of the vocabulary",
        ),
    ];
    for (path, body, param, message) in cases {
        let r = s.post(path, &body);
        assert_error(&r, 400, "BadRequestError", Some(param));
        let text = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(text.starts_with(message), "{path} {body}: {text}");
    }
}

/// A request announcing a body of `bytes`: refused from its headers, before the body is read
/// (raw TCP, since a client still writing the body would see the connection close).
fn too_large(s: &TestServer, bytes: usize) -> Reply {
    use std::io::{Read, Write};
    let addr = s.base.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {bytes}\r\n\r\n{{\"messages\": "
    );
    conn.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = conn.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.lines().nth(1).unwrap_or_default().to_owned()
    } else {
        body.to_owned()
    };
    Reply {
        status,
        headers: Vec::new(),
        body,
    }
}

/// Dropping the connection mid-stream cancels the request: the engine frees its sequence.
#[test]
fn client_disconnect_cancels_the_request() {
    let (s, _alone) = small_server_alone();
    let body = json!({"messages": hello(), "max_tokens": 3000, "ignore_eos": true, "stream": true});
    s.hang_up_after("/v1/chat/completions", &body, 6);

    // A non-streamed request whose client gives up is cancelled too.
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_millis(300))
        .build();
    let r = agent
        .post(&s.url("/v1/chat/completions"))
        .send_json(json!({"messages": hello(), "max_tokens": 3000, "ignore_eos": true}));
    assert!(r.is_err(), "the client timed out");
    s.wait_idle();
}

/// With one running slot and one waiting slot, the third request is refused with 429.
#[test]
fn overload_is_429() {
    let (s, _alone) = small_server_alone();
    s.wait_idle();
    let body = json!({"messages": hello(), "max_tokens": 3000, "ignore_eos": true, "stream": true});
    let (sa, _, mut a) = s.open_stream("/v1/chat/completions", &body);
    assert_eq!(sa, 200);
    // The role chunk comes before the engine runs; the first content chunk proves `a` runs.
    let mut line = String::new();
    for _ in 0..4 {
        a.read_line(&mut line).unwrap();
    }
    // `a` now runs (it produced output); `b` has to wait.
    let (sb, _, b) = s.open_stream("/v1/chat/completions", &body);
    assert_eq!(sb, 200);

    let r = s.post(
        "/v1/chat/completions",
        &json!({"messages": hello(), "max_tokens": 1}),
    );
    assert_error(&r, 429, "RateLimitError", None);
    drop(a);
    drop(b);
    s.wait_idle();
    // The freed slots are usable again.
    let start = Instant::now();
    loop {
        let r = s.post(
            "/v1/chat/completions",
            &json!({"messages": hello(), "max_tokens": 1}),
        );
        if r.status == 200 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{}", r.body);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The request-shape limits are flags: lowered ones refuse what the defaults allow, and each
/// refusal names its flag.
#[test]
fn request_shape_limits_are_flags_named_in_the_refusal() {
    let s = start(&[
        "--max-n",
        "2",
        "--max-stop",
        "1",
        "--max-logit-bias",
        "1",
        "--max-prompts",
        "2",
        "--max-request-body-bytes",
        "4KiB",
    ]);
    let chat = |extra: Value| {
        let mut body = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1});
        for (k, v) in extra.as_object().expect("an object") {
            body[k] = v.clone();
        }
        s.post("/v1/chat/completions", &body)
    };
    let cases = [
        (chat(json!({"n": 3})), "n", "--max-n"),
        (chat(json!({"stop": ["a", "b"]})), "stop", "--max-stop"),
        (
            chat(json!({"logit_bias": {"1": 1, "2": 1}})),
            "logit_bias",
            "--max-logit-bias",
        ),
        (
            s.post(
                "/v1/completions",
                &json!({"prompt": ["a", "b", "c"], "max_tokens": 1}),
            ),
            "prompt",
            "--max-prompts",
        ),
    ];
    for (reply, param, flag) in cases {
        assert_error(&reply, 400, "BadRequestError", Some(param));
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        assert!(message.contains(flag), "{flag} not named: {message}");
    }
    // What the lowered limits still allow is served.
    assert_eq!(chat(json!({"n": 2, "stop": ["a"]})).status, 200);
    let big = too_large(&s, 8 << 10);
    assert_eq!(big.status, 413, "{}", big.body);
    assert!(
        big.body.contains("--max-request-body-bytes"),
        "{}",
        big.body
    );
}
