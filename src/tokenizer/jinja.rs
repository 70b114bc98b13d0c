//! A minijinja environment that renders chat templates the way transformers' Jinja2 does.
//!
//! Chat templates are written against Python Jinja2 as configured by transformers
//! (`transformers/utils/chat_template_utils.py`): an `ImmutableSandboxedEnvironment` with
//! `trim_blocks=True, lstrip_blocks=True`, the `loopcontrols` extension, a JSON-dumping
//! `tojson`, and the globals `raise_exception` and `strftime_now`. Templates also call Python
//! string methods (`startswith`, `split`, `strip('\n')`, ...) on values. Everything here closes
//! one of those gaps; the rest (slicing like `messages[::-1]`, `namespace`, `loop.*`, tests
//! such as `is string`/`is false`) minijinja already does the Jinja2 way.

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Value, ValueKind, from_args};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State};

use super::pyjson;

/// An environment with transformers' settings, without any template yet.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // Jinja2 defaults except the two transformers turns on. `keep_trailing_newline` stays off as
    // in Jinja2: a single newline at the very end of the template source is dropped.
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(false)
        .build()
        .unwrap_or_default();
    env.set_syntax(syntax);
    // Prompts are plain text: never HTML-escape, whatever a template's name looks like.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_formatter(python_formatter);
    env.set_unknown_method_callback(python_methods);
    env.add_filter("tojson", pyjson::tojson_filter);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env
}

/// `{{ x }}` output as Python's `str(x)`. minijinja already prints `None`/`True`/`False` the
/// Python way; floats differ (`1e+16` vs `10000000000000000.0`), so they are printed with
/// Python's `repr`.
fn python_formatter(
    out: &mut minijinja::Output,
    state: &mut State,
    value: &Value,
) -> Result<(), Error> {
    if value.kind() == ValueKind::Number
        && !value.is_integer()
        && let Ok(f) = f64::try_from(value.clone())
    {
        return out
            .write_str(&pyjson::float_repr(f))
            .map_err(|e| Error::new(ErrorKind::WriteFailure, e.to_string()));
    }
    minijinja::escape_formatter(out, state, value)
}

/// Python methods called on template values. The argument-less `strip`/`lstrip`/`rstrip` use
/// Python's notion of whitespace (which also covers U+001C..U+001F); everything else comes
/// from minijinja-contrib's `pycompat`.
fn python_methods(
    state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if let Some(s) = value.as_str() {
        let trim: Option<fn(&str) -> &str> = match method {
            "strip" => Some(|s| s.trim_matches(is_python_space)),
            "lstrip" => Some(|s| s.trim_start_matches(is_python_space)),
            "rstrip" => Some(|s| s.trim_end_matches(is_python_space)),
            _ => None,
        };
        if let Some(trim) = trim {
            let (chars,): (Option<Value>,) = from_args(args)?;
            if chars.as_ref().is_none_or(|c| c.is_none()) {
                return Ok(Value::from(trim(s)));
            }
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// Python's `str.isspace` for one character.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `raise_exception(message)`: a template's way to reject a conversation (e.g. roles that do
/// not alternate). The message reaches the client.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)`: the local time formatted with strftime directives, as templates use
/// for "Today is 26 Jul 2024".
fn strftime_now(format: String) -> Result<Value, Error> {
    use chrono::format::{Item, StrftimeItems};
    use std::fmt::Write as _;

    if StrftimeItems::new(&format).any(|item| matches!(item, Item::Error)) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: invalid format {format:?}"),
        ));
    }
    let mut out = String::new();
    write!(out, "{}", chrono::Local::now().format(&format)).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: cannot format {format:?}"),
        )
    })?;
    Ok(Value::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str) -> Result<String, Error> {
        environment().render_str(source, ())
    }

    #[test]
    fn strftime_now_formats_the_current_year() {
        let year = render("{{ strftime_now('%Y') }}").unwrap();
        assert_eq!(year.len(), 4);
        assert!(year.chars().all(|c| c.is_ascii_digit()));
        assert!(render("{{ strftime_now('%Q') }}").is_err());
    }

    #[test]
    fn raise_exception_fails_the_render_with_its_message() {
        let err = render("{{ raise_exception('roles must alternate') }}").unwrap_err();
        assert!(err.to_string().contains("roles must alternate"), "{err}");
    }

    #[test]
    fn python_strip_covers_python_whitespace() {
        assert_eq!(render("[{{ '\\x1c a \\u3000'.strip() }}]").unwrap(), "[a]");
        assert_eq!(render("[{{ 'xxaxx'.strip('x') }}]").unwrap(), "[a]");
        assert_eq!(render("[{{ ' a '.rstrip(none) }}]").unwrap(), "[ a]");
    }

    #[test]
    fn loop_controls_are_enabled() {
        let out = render(
            "{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}",
        );
        assert_eq!(out.unwrap(), "012");
    }
}
