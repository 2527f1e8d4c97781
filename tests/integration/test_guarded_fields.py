"""Issue 9, limits that bind every caller: the fields the limits read
(token limits, stream, stream_options, model) cannot be lifted or skipped
by a body a lenient upstream reads otherwise, a stream's usage chunk is
always asked for and recognised however the upstream formats it, and a
multipart form names its model once.

/guarded (conftest.py): chat, completions, responses, embeddings, images
and transcriptions; OpenAIProxyMaxTokens 64; a model allow-list."""

import json
import uuid

import pytest

from harness import MESSAGES, openai_error, sse_data_lines, usage_line

CAP = 64
MODEL = "gpt-4o-mini"

# endpoint -> (a valid body without any token limit, the field the cap is written to)
GENERATING = {
    "chat/completions": ({"model": MODEL, "messages": MESSAGES}, "max_tokens"),
    "completions": ({"model": MODEL, "prompt": "hello there"}, "max_tokens"),
    "responses": ({"model": MODEL, "input": "hello there"}, "max_output_tokens"),
}
LIMIT_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def post_raw(client, path, text, **kw):
    marker = uuid.uuid4().hex
    resp = client.post(f"/guarded/{path}?t={marker}", text,
                       headers={"Content-Type": "application/json"}, **kw)
    return resp, marker


def with_field(body, raw_member):
    """`body` as JSON text with a raw `"name": value` member appended, so that
    the test can send what json.dumps cannot (duplicates, odd numbers)."""
    return json.dumps(body)[:-1] + ", " + raw_member + "}"


def assert_refused(resp, mock, what):
    assert resp.status == 400, f"{what}: {resp.status} {resp.text[:200]}"
    err = openai_error(resp)  # below the Location: the SDKs' shape
    assert err["code"] and err["message"], what
    assert resp.header("Access-Control-Allow-Origin") is None  # no Origin was sent
    assert mock.requests() == [], f"{what} reached the upstream"


def upstream_limits(mock):
    sent = mock.requests()[-1]["body"]
    return {f: sent[f] for f in LIMIT_FIELDS if f in sent}


@pytest.mark.parametrize("path", sorted(GENERATING))
@pytest.mark.parametrize("value", ['"9999"', '"64.5"', '"1e9"', "1e9", "100.0", "64.5", "-1",
                                   "0", "true", "[9999]", '{"n":9999}'])
def test_a_token_limit_of_the_wrong_type_is_refused(client, mock, path, value):
    body, field = GENERATING[path]
    for name in LIMIT_FIELDS:
        mock.reset()
        resp, _ = post_raw(client, path, with_field(body, f'"{name}": {value}'))
        assert_refused(resp, mock, f"{path} {name}={value}")
        assert name in openai_error(resp)["message"]


@pytest.mark.parametrize("path", sorted(GENERATING))
def test_null_or_a_missing_limit_gets_the_cap(client, mock, path):
    body, field = GENERATING[path]
    resp, _ = post_raw(client, path, json.dumps(body))
    assert resp.status == 200, resp.text
    assert upstream_limits(mock) == {field: CAP}
    for name in LIMIT_FIELDS:
        mock.reset()
        resp, _ = post_raw(client, path, with_field(body, f'"{name}": null'))
        assert resp.status == 200, resp.text
        limits = upstream_limits(mock)
        assert limits[name] == CAP and all(v <= CAP for v in limits.values()), limits


@pytest.mark.parametrize("path", sorted(GENERATING))
def test_a_second_copy_or_a_look_alike_cannot_lift_the_cap(client, mock, path):
    body, field = GENERATING[path]
    kelvin = field.replace("k", "\u212a")  # folds to k in Go's encoding/json
    tricks = [
        f'"{field}": 10, "{field}": 100000',  # a duplicate: the last one wins in Python
        f'"{field}": 10, "{field.upper()}": 100000',  # Go's encoding/json folds case
        f'"{field}": 10, "{kelvin}": 100000',
        f'"{field}": 10, "{field}\\u0000": 100000',
        '"N": 128', '"Stream": true', '"stream_Options": {}', '"Model": "o1-pro"',
    ]
    for trick in tricks:
        mock.reset()
        resp, _ = post_raw(client, path, with_field(body, trick))
        assert_refused(resp, mock, f"{path} {trick}")


@pytest.mark.parametrize("value", ['"true"', "1", '"yes"', "{}", "[]"])
def test_a_stream_of_the_wrong_type_is_refused(client, mock, value):
    for path in ("chat/completions", "completions", "responses"):
        mock.reset()
        body, _ = GENERATING[path]
        resp, _ = post_raw(client, path, with_field(body, f'"stream": {value}'))
        assert_refused(resp, mock, f"{path} stream={value}")


@pytest.mark.parametrize("options", ["true", '"include_usage"', "[]", "1",
                                     '{"include_usage": "yes"}', '{"include_usage": 1}',
                                     '{"Include_Usage": false}'])
def test_stream_options_of_the_wrong_type_are_refused(client, mock, options):
    body = {"model": MODEL, "messages": MESSAGES, "stream": True}
    resp, _ = post_raw(client, "chat/completions",
                       with_field(body, f'"stream_options": {options}'))
    assert_refused(resp, mock, f"stream_options={options}")


def streamed_objects(resp):
    return [json.loads(d) for d in sse_data_lines(resp.body) if d != "[DONE]"]


def assert_charged(httpd, marker):
    fields, line = usage_line(httpd, marker)
    assert fields["total_tokens"] != "-" and int(fields["total_tokens"]) > 0, line
    return fields


@pytest.mark.parametrize("options", [None, "null", '{"include_usage": false}',
                                     '{"include_usage": null}', "{}"])
@pytest.mark.parametrize("path", ["chat/completions", "completions"])
def test_every_stream_asks_for_the_usage_chunk_and_hides_it(client, mock, httpd, path,
                                                            options):
    body, _ = GENERATING[path]
    body = dict(body, stream=True)
    text = json.dumps(body) if options is None else with_field(body,
                                                               f'"stream_options": {options}')
    resp, marker = post_raw(client, path, text, stream=True)
    assert resp.status == 200, resp.text
    sent = mock.requests()[-1]["body"]
    assert sent["stream_options"]["include_usage"] is True
    objects = streamed_objects(resp)
    assert objects and all("usage" not in o or o["usage"] is None for o in objects), \
        "the client saw a usage chunk it did not ask for"
    assert sse_data_lines(resp.body)[-1] == "[DONE]"
    assert_charged(httpd, marker)


@pytest.mark.parametrize("path", ["chat/completions", "completions"])
def test_a_client_that_asks_for_usage_sees_it(client, mock, httpd, path):
    body, _ = GENERATING[path]
    body = dict(body, stream=True, stream_options={"include_usage": True})
    resp, marker = post_raw(client, path, json.dumps(body), stream=True)
    usage = [o for o in streamed_objects(resp) if o.get("usage")]
    assert len(usage) == 1 and usage[0]["choices"] == []
    fields = assert_charged(httpd, marker)
    assert int(fields["total_tokens"]) == usage[0]["usage"]["total_tokens"]


@pytest.mark.parametrize("style", ["spaced", "reordered", "multiline", "escaped"])
def test_the_usage_chunk_is_known_by_its_structure(client, mock, httpd, style):
    body = {"model": MODEL, "messages": MESSAGES, "stream": True,
            "mock": {"event_format": style, "chunks": 3}}
    resp, marker = post_raw(client, "chat/completions", json.dumps(body), stream=True)
    assert resp.status == 200, resp.text
    text = resp.text
    assert "usage\": {" not in text and "u0075sage\":{" not in text and \
        '"prompt_tokens"' not in text, f"{style}: the usage chunk reached the client"
    assert "data: [DONE]" in text
    fields = assert_charged(httpd, marker)
    assert int(fields["completion_tokens"]) == 3


def form(parts, boundary="Bnd"):
    out = b""
    for headers, value in parts:
        out += b"--" + boundary.encode() + b"\r\n" + headers.encode() + b"\r\n\r\n" + value + b"\r\n"
    return out + b"--" + boundary.encode() + b"--\r\n"


def post_form(client, parts):
    return client.post("/guarded/audio/transcriptions", form(parts),
                       headers={"Content-Type": "multipart/form-data; boundary=Bnd"})


FILE = ('Content-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav", b"RIFF....WAVE")


def test_a_form_with_two_model_fields_is_refused(client, mock):
    for second in ('Content-Disposition: form-data; name="model"',
                   "content-disposition: form-data; NAME=model",
                   "Content-Disposition: form-data; name*=UTF-8''mod%65l",
                   'Content-Disposition: form-data; name="model"; filename="m.txt"'):
        mock.reset()
        resp = post_form(client, [FILE, ('Content-Disposition: form-data; name="model"',
                                         b"whisper-1"), (second, b"gpt-4o-transcribe")])
        assert resp.status == 400, (second, resp.status, resp.text)
        assert "more than once" in openai_error(resp)["message"]
        assert mock.requests() == []


def test_a_model_look_alike_in_another_header_names_nothing(client, mock):
    # the allowed name sits in a Content-Type parameter, which no upstream
    # reads as the part's name: the model the upstream uses is the real one
    resp = post_form(client, [FILE, ('Content-Disposition: form-data; name="prompt"\r\n'
                                     'Content-Type: text/plain; name="model"', b"whisper-1"),
                              ('Content-Disposition: form-data; name="model"',
                               b"gpt-4o-transcribe")])
    assert resp.status == 400 and openai_error(resp)["code"] == "model_not_allowed", resp.text
    assert "gpt-4o-transcribe" in openai_error(resp)["message"]
    assert mock.requests() == []
    resp = post_form(client, [FILE, ('Content-Disposition: form-data; name="model"',
                                     b"whisper-1")])
    assert resp.status == 200, resp.text
    assert resp.json()["mock_received"]["fields"]["model"] == "whisper-1"
