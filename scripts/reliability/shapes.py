"""What a tealight error body must look like, per route family."""

import json

# Path prefixes whose errors use Anthropic's shape; every other route uses OpenAI's.
ANTHROPIC_PREFIXES = ("/v1/messages",)


def error_shape_problem(path, status, body):
    """None if `body` is a well-formed error for `path` (or not an error), else why not."""
    if status < 400:
        return None
    if status >= 500:
        return f"server error {status}: {body[:300]!r}"
    try:
        data = json.loads(body)
    except ValueError:
        return f"{status} body is not JSON: {body[:200]!r}"
    if path.startswith(ANTHROPIC_PREFIXES):
        ok = (
            isinstance(data, dict)
            and data.get("type") == "error"
            and isinstance(data.get("error"), dict)
            and isinstance(data["error"].get("type"), str)
            and isinstance(data["error"].get("message"), str)
        )
        return None if ok else f"{status} is not Anthropic-shaped: {body[:300]!r}"
    err = data.get("error") if isinstance(data, dict) else None
    ok = (
        isinstance(err, dict)
        and isinstance(err.get("message"), str)
        and err["message"]
        and isinstance(err.get("type"), str)
        and "param" in err
        and err.get("code") == status
    )
    return None if ok else f"{status} is not OpenAI-shaped: {body[:300]!r}"
