"""schemathesis hooks for tealight: every error response must have the API's error shape
(OpenAI's on the OpenAI routes, Anthropic's on /v1/messages)."""

import schemathesis

from shapes import error_shape_problem


@schemathesis.check
def error_is_shaped(ctx, response, case):
    problem = error_shape_problem(case.path, response.status_code, response.content)
    if problem:
        raise AssertionError(problem)
