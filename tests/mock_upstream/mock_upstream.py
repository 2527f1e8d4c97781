#!/usr/bin/env python3
"""Mock OpenAI-compatible upstream for mod_openai_proxy.

Standard library only (Python 3.11).  Used by the integration tests, which
drive its behaviour per request with a "mock" directive object (in the JSON
body or in an ``x-mock`` header) and then inspect what it received through
the /__mock/ control endpoints, and by the quick-start demo as an offline
stand-in for api.openai.com.  See README.md next to this file.
"""

import argparse
import base64
import collections
import email.parser
import email.policy
import gzip
import hashlib
import json
import os
import random
import re
import resource
import secrets
import select
import signal
import socket
import socketserver
import string
import struct
import sys
import threading
import time
import traceback
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_MODEL = "gpt-3.5-turbo"
DEFAULT_CHUNK_DELAY = 0.02
POLL_INTERVAL = 0.05
SPLIT_PAUSE = 0.01
GATE_TIMEOUT = 15  # a gate not opened by then: the pause ends, counted in gate_timeouts
MAX_RECORDS = 50_000
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"
SYSTEM_FINGERPRINT = "fp_0ba0d124f1"
CONTROL_PREFIX = "/__mock/"
DEFAULT_REPLY = ("This is a mock answer from the local mock upstream "
                 "(no OpenAI key is configured).")
MODELS = [
    ("gpt-3.5-turbo", 1677610602, "openai"),
    ("gpt-4o", 1715367049, "system"),
    ("gpt-4o-mini", 1721172741, "system"),
    ("text-embedding-ada-002", 1671217299, "openai-internal"),
    ("text-embedding-3-small", 1705948997, "system"),
]
# status -> (message, type, code) of the canned OpenAI-style error bodies
CANNED_ERRORS = {
    400: ("Invalid request (mock upstream).", "invalid_request_error", None),
    401: ("Incorrect API key provided: sk-...xxxx.", "invalid_request_error",
          "invalid_api_key"),
    403: ("You are not allowed to sample from this model.",
          "invalid_request_error", None),
    404: ("The model `{model}` does not exist or you do not have access to it.",
          "invalid_request_error", "model_not_found"),
    429: ("Rate limit reached for requests", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. "
          "Sorry about that!", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.",
          "server_error", None),
}
UNPARSABLE_JSON = ("We could not parse the JSON body of your request. (HINT: This "
                   "likely means you aren't using your HTTP library correctly. The "
                   "OpenAI API expects a JSON payload, but what was sent was not "
                   "valid JSON.)")


# --------------------------------------------------------------------------
# JSON payloads
# --------------------------------------------------------------------------

def json_pretty(obj):
    """Pretty-printed JSON, as the real API sends non-streamed bodies."""
    return json.dumps(obj, indent=2).encode()


def json_compact(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def parse_json(raw):
    try:
        return json.loads(raw) if raw else None
    except (ValueError, RecursionError):
        return None


def error_body(message, etype="invalid_request_error", code=None):
    return json_pretty({"error": {"message": message, "type": etype,
                                  "param": None, "code": code}})


def canned_error(status, model):
    default_type = "server_error" if status >= 500 else "invalid_request_error"
    message, etype, code = CANNED_ERRORS.get(
        status, (f"Mock upstream error (HTTP {status}).", default_type, None))
    return error_body(message.format(model=model), etype, code)


def is_reasoning_model(model):
    """OpenAI's reasoning models (o1, o3, o4-mini, gpt-5 and later, their
    variants and dated names), by the rule the proxy uses: a fine-tune's
    "ft:" and a router's "vendor/" prefix are left out."""
    if not isinstance(model, str):
        return False
    name = model[3:] if model.lower().startswith("ft:") else model
    name = name.rsplit("/", 1)[-1].lower()
    if re.match(r"o\d+(?:$|[-:])", name):
        return True
    found = re.match(r"gpt-(\d+)(?:$|[-.:])", name)
    return bool(found) and int(found.group(1)) >= 5


def unsupported_parameter(param, message, code):
    return json_pretty({"error": {"message": message, "type": "invalid_request_error",
                                  "param": param, "code": code}})


def openai_refusal(body, directives):
    """The 400 body OpenAI answers for a field the model does not take, or
    None: a reasoning model with max_tokens, or with a temperature other
    than 1; with the directive refuse_stream_options, any stream_options
    (as older OpenAI-compatible servers and some Azure API versions
    answer): "param" names it in param, anything else only in the message;
    with refuse_params [names], the first of them the body has, for any
    model (as an Azure deployment of a reasoning model answers)."""
    for name in directives.get("refuse_params", []):
        if name in body:
            return unsupported_parameter(name, f"Unsupported parameter: '{name}' is not "
                                         "supported with this model.", "unsupported_parameter")
    if "stream_options" in body and directives.get("refuse_stream_options"):
        if directives["refuse_stream_options"] == "param":
            return unsupported_parameter("stream_options", "Unsupported parameter: "
                                         "'stream_options'.", "unsupported_parameter")
        return unsupported_parameter(None, "Unrecognized request argument supplied: "
                                     "stream_options", None)
    if not is_reasoning_model(body.get("model")):
        return None
    if "max_tokens" in body:
        return unsupported_parameter(
            "max_tokens", "Unsupported parameter: 'max_tokens' is not supported with this "
            "model. Use 'max_completion_tokens' instead.", "unsupported_parameter")
    temperature = body.get("temperature")
    if temperature is not None and (temperature != 1 or isinstance(temperature, bool)):
        shown = json.dumps(temperature)
        return unsupported_parameter(
            "temperature", f"Unsupported value: 'temperature' does not support {shown} "
            "with this model. Only the default (1) value is supported.", "unsupported_value")
    return None


def completion_id():
    return "chatcmpl-" + "".join(random.choices(string.ascii_letters + string.digits, k=29))


def content_text(content):
    """Text of a message content: a string or an array of parts; anything else is ''."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p if isinstance(p, str) else p.get("text") for p in content
                 if isinstance(p, str) or isinstance(p, dict)]
        return " ".join(t for t in texts if isinstance(t, str))
    return ""


def request_messages(body):
    messages = body.get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def default_reply(messages):
    said = next((content_text(m.get("content")) for m in reversed(messages)
                 if m.get("role") == "user"), "").strip()
    return f"{DEFAULT_REPLY} You said: {said}" if said else DEFAULT_REPLY


def split_words(text):
    """Word-ish pieces whose concatenation is exactly `text`."""
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


def content_pieces(directives, messages):
    """The assistant reply as a list of stream deltas (non-streamed: joined)."""
    if "tokens" in directives:
        return [str(t) for t in directives["tokens"]]
    if "chunks" in directives:
        return [f"tok{i} " for i in range(int(directives["chunks"]))]
    reply = directives["reply"] if "reply" in directives else default_reply(messages)
    return split_words(str(reply))


def usage_object(messages, pieces):
    prompt = sum(len(content_text(m.get("content")).split()) for m in messages)
    return {"prompt_tokens": prompt, "completion_tokens": len(pieces),
            "total_tokens": prompt + len(pieces)}


def completion_object(model, content, usage, d=None):
    """A chat.completion; the directives `d` add what a family adds (Azure's
    content filter results, llama.cpp's timings, Groq's usage timings and
    x_groq)."""
    d = d or {}
    answer = {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0,
                     "message": {"role": "assistant", "content": content, "refusal": None},
                     "logprobs": None,
                     "finish_reason": "stop"}],
        "usage": usage,
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    if "fingerprint" in d:
        answer.pop("system_fingerprint")
        if d["fingerprint"] is not None:
            answer["system_fingerprint"] = d["fingerprint"]
    if d.get("azure_filters"):
        answer["prompt_filter_results"] = [{"prompt_index": 0,
                                            "content_filter_results": AZURE_FILTERS}]
        answer["choices"][0]["content_filter_results"] = AZURE_FILTERS
    if d.get("timings"):
        answer["timings"] = llamacpp_timings(usage)
    if d.get("x_groq"):
        answer["usage"] = groq_usage(usage)
        answer["x_groq"] = {"id": "req_" + secrets.token_hex(13)}
    return answer


# Upstream families ("profile"): each is the defaults of some directives, as
# a family of OpenAI-compatible servers answers; a directive sent with the
# request overrides its profile's value (README.md, "Profiles").
PROFILES = {
    "openai": {},
    "azure": {"event_format": "sorted", "body_format": "sorted", "azure_filters": True,
              "usage_null": False},
    "vllm": {"event_format": "compact", "body_format": "compact", "usage_null": False,
             "continuous_usage": True},
    "llamacpp": {"event_format": "compact", "body_format": "compact", "usage_null": False,
                 "usage": "last", "usage_when": "always", "timings": True,
                 "data_prefix": "data:", "line_end": "crlf"},
    "groq": {"event_format": "compact", "body_format": "compact", "usage_null": False,
             "usage": "x_groq", "usage_when": "always", "x_groq": True},
    "ollama": {"event_format": "compact", "body_format": "compact", "usage_null": False,
               "fingerprint": "fp_ollama", "role_every": True},
    "mistral": {"event_format": "compact", "body_format": "compact", "usage_null": False,
                "usage": "last", "usage_when": "always", "fingerprint": None},
    "openrouter": {"event_format": "compact", "body_format": "compact", "usage_null": False,
                   "usage_when": "always", "comment": "OPENROUTER PROCESSING"},
}
USAGE_PLACEMENTS = ("chunk", "last", "every", "x_groq", "none")
AZURE_FILTERS = {name: {"filtered": False, "severity": "safe"}
                 for name in ("hate", "self_harm", "sexual", "violence")}
UTF8_BOM = b"\xef\xbb\xbf"
LINE_ENDS = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}


def usage_placements(d, asked):
    """Where a stream reports its usage (`usage`: one placement or a list),
    or () when it reports none: `usage_when` "asked" (the default) reports
    only if stream_options.include_usage asked for it, "always" whatever it
    says; `no_usage` never."""
    placements = d.get("usage", "chunk")
    placements = [placements] if isinstance(placements, str) else list(placements)
    for placement in placements:
        if placement not in USAGE_PLACEMENTS:
            raise ValueError(f"usage must be one of {USAGE_PLACEMENTS}, not {placement!r}")
    when = d.get("usage_when", "asked")
    if when not in ("asked", "always"):
        raise ValueError(f"usage_when must be asked or always, not {when!r}")
    if d.get("no_usage") or not (asked or when == "always"):
        return ()
    return tuple(p for p in placements if p != "none")


def groq_usage(usage):
    """Groq's usage object: the counts and its timings (floats)."""
    return {"queue_time": 0.0123, "prompt_tokens": usage["prompt_tokens"],
            "prompt_time": 0.0021, "completion_tokens": usage["completion_tokens"],
            "completion_time": 0.0345, "total_tokens": usage["total_tokens"],
            "total_time": 0.0366}


def llamacpp_timings(usage):
    return {"prompt_n": usage["prompt_tokens"], "prompt_ms": 12.5,
            "prompt_per_token_ms": 3.1, "prompt_per_second": 320.0,
            "predicted_n": usage["completion_tokens"], "predicted_ms": 40.25,
            "predicted_per_token_ms": 8.05, "predicted_per_second": 124.2}


def stream_events(model, pieces, usage, include_usage, d=None, stream_options=None):
    """chat.completion.chunk objects in order, shaped by the directives `d`
    (a profile's and the request's); None stands for `data: [DONE]`."""
    d = d or {}
    stream_options = stream_options if isinstance(stream_options, dict) else {}
    placements = set(usage_placements(d, include_usage))
    if (d.get("continuous_usage") and "chunk" in placements
            and stream_options.get("continuous_usage_stats")):
        placements.add("every")  # vLLM: usage in every chunk when asked so
    fingerprint = d.get("fingerprint", SYSTEM_FINGERPRINT)
    base = {"id": completion_id(), "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}
    if fingerprint is not None:
        base["system_fingerprint"] = fingerprint
    usage_null = include_usage and d.get("usage_null", True) and not d.get("no_usage")

    def so_far(completion):
        return {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": completion,
                "total_tokens": usage["prompt_tokens"] + completion}

    def chunk(delta, done, finish_reason=None):
        choice = {"index": 0, "delta": delta, "logprobs": None,
                  "finish_reason": finish_reason}
        if d.get("azure_filters"):
            choice["content_filter_results"] = ({} if finish_reason or "role" in delta
                                                else AZURE_FILTERS)
        if d.get("role_every") and "role" not in delta and finish_reason is None:
            delta = choice["delta"] = dict(delta, role="assistant")
        obj = dict(base, choices=[choice])
        if usage_null:
            obj["usage"] = None
        if "every" in placements:
            obj["usage"] = so_far(done)
        if finish_reason is not None:
            if "last" in placements:
                obj["usage"] = usage
            if "x_groq" in placements:
                obj["x_groq"] = {"id": "req_" + secrets.token_hex(13),
                                 "usage": groq_usage(usage)}
            if d.get("timings"):
                obj["timings"] = llamacpp_timings(usage)
        return obj

    events = []
    if d.get("azure_filters"):
        events.append({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                       "prompt_filter_results": [{"prompt_index": 0,
                                                  "content_filter_results": AZURE_FILTERS}]})
    events.append(chunk({"role": "assistant", "content": "", "refusal": None}, 0))
    events += [chunk({"content": piece}, i + 1) for i, piece in enumerate(pieces)]
    events.append(chunk({}, len(pieces), "stop"))
    if "chunk" in placements:
        final = dict(base, choices=[], usage=usage)
        if d.get("timings"):
            final["timings"] = llamacpp_timings(usage)
        events.append(final)
    if not d.get("no_done"):
        events.append(None)
    return events


def reported_usage(event):
    """The usage an answer or event reports (its own, Groq's x_groq one or
    a Responses API response's), or None."""
    if isinstance(event, tuple):
        event = event[1]
    if not isinstance(event, dict):
        return None
    for holder in (event, event.get("x_groq"), event.get("response")):
        if isinstance(holder, dict) and isinstance(holder.get("usage"), dict):
            return holder["usage"]
    return None


def text_completion_events(model, pieces, usage, include_usage):
    """Legacy Completions stream: text_completion objects; None is [DONE]."""
    base = {"id": "cmpl-" + completion_id()[9:], "object": "text_completion",
            "created": int(time.time()), "model": model}

    def chunk(text, finish_reason=None):
        return dict(base, choices=[{"text": text, "index": 0, "logprobs": None,
                                    "finish_reason": finish_reason}])

    events = [chunk(piece) for piece in pieces] + [chunk("", "stop")]
    if include_usage:
        events.append(dict(base, choices=[], usage=usage))
    events.append(None)
    return events


def format_json(event, style):
    """An event's JSON as upstreams other than OpenAI write it (`event_format`):
    compact (the default), spaced (`"choices": []`), reordered (keys
    reversed), sorted (keys in alphabetical order, as Azure), multiline
    (indented, one data: line per line), escaped (`"\\u0075sage"` for usage),
    pretty (indent=2, the non-streamed default)."""
    if style == "spaced":
        return json.dumps(event, separators=(", ", ": ")).encode()
    if style == "reordered":
        return json_compact(dict(reversed(list(event.items()))))
    if style == "sorted":
        return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
    if style == "multiline":
        return json.dumps(event, indent=1).encode()
    if style == "escaped":
        return json_compact(event).replace(b'"usage"', b'"\\u0075sage"')
    if style == "pretty":
        return json_pretty(event)
    if style not in (None, "compact"):
        raise ValueError(f"unknown event_format {style!r}")
    return json_compact(event)


def shown_to_client(group):
    """Whether a group of events holds one a proxy relays: the usage-only
    chunk (which a proxy may ask for and keep to itself) and [DONE] (which
    a proxy may hold until then) do not count, so gates skip the pauses
    before them."""
    return any(e is not None and not (isinstance(e, dict) and e.get("choices") == []
                                      and "usage" in e) for e in group)


def render_event(event, timestamps, style=None, prefix=b"data: ", eol=b"\n"):
    """None: `data: [DONE]`; a (name, object) pair: a named event (Responses
    API); an object: a data-only event (Chat Completions). `prefix` is what
    each data line starts with, `eol` its line end."""
    if event is None:
        return prefix + b"[DONE]" + eol + eol
    name = None
    if isinstance(event, tuple):
        name, event = event
    if timestamps:
        event = dict(event, mock_sent_at=time.time())
    head = b"event: " + name.encode() + eol if name else b""
    lines = format_json(event, style).split(b"\n")
    return head + b"".join(prefix + line + eol for line in lines) + eol


def models_list():
    return {"object": "list",
            "data": [{"id": mid, "object": "model", "created": created, "owned_by": owner}
                     for mid, created, owner in MODELS]}


def model_object(model_id):
    for mid, created, owner in MODELS:
        if mid == model_id:
            return {"id": mid, "object": "model", "created": created, "owned_by": owner}
    return None


def response_input_messages(body):
    """The Responses API `input` (a string or a list of items) as chat-like
    messages, for the default reply and the token count."""
    given = body.get("input")
    if isinstance(given, str):
        return [{"role": "user", "content": given}]
    if isinstance(given, list):
        return [m for m in given if isinstance(m, dict)]
    return []


def response_object(model, text, usage, status="completed"):
    rid = "resp_" + secrets.token_hex(24)
    output = []
    if status == "completed":
        output = [{"id": "msg_" + secrets.token_hex(24), "type": "message",
                   "status": "completed", "role": "assistant",
                   "content": [{"type": "output_text", "text": text, "annotations": []}]}]
    return {"id": rid, "object": "response", "created_at": int(time.time()),
            "status": status, "model": model, "output": output,
            "metadata": {}, "usage": usage}


def responses_usage(messages, pieces):
    counted = usage_object(messages, pieces)
    return {"input_tokens": counted["prompt_tokens"],
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": counted["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": counted["total_tokens"]}


def responses_stream_events(model, pieces, usage):
    """The named events of a streamed Responses API answer (no [DONE])."""
    text = "".join(pieces)
    final = response_object(model, text, usage)
    started = dict(final, status="in_progress", output=[], usage=None)
    item = final["output"][0]
    seq = iter(range(10_000))

    def ev(name, **fields):
        return (name, dict({"type": name, "sequence_number": next(seq)}, **fields))

    events = [ev("response.created", response=started),
              ev("response.in_progress", response=started),
              ev("response.output_item.added", output_index=0,
                 item=dict(item, status="in_progress", content=[])),
              ev("response.content_part.added", item_id=item["id"], output_index=0,
                 content_index=0, part={"type": "output_text", "text": "", "annotations": []})]
    events += [ev("response.output_text.delta", item_id=item["id"], output_index=0,
                  content_index=0, delta=piece) for piece in pieces]
    events += [ev("response.output_text.done", item_id=item["id"], output_index=0,
                  content_index=0, text=text),
               ev("response.content_part.done", item_id=item["id"], output_index=0,
                  content_index=0, part=item["content"][0]),
               ev("response.output_item.done", output_index=0, item=item),
               ev("response.completed", response=final)]
    return events


# --------------------------------------------------------------------------
# Tool calls (the "tool_calls" directive)
# --------------------------------------------------------------------------

def tool_call_specs(directives):
    """[(call id, name, arguments text)] of the tool_calls directive: a list
    of {"name", "arguments" (a string, or any JSON value, encoded), "id"}."""
    specs = directives["tool_calls"]
    if not isinstance(specs, list) or not specs:
        raise ValueError("tool_calls must be a non-empty list of {name, arguments}")
    out = []
    for spec in specs:
        arguments = spec.get("arguments", {})
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, separators=(",", ":"))
        out.append((spec.get("id") or "call_" + secrets.token_hex(12), str(spec["name"]),
                    arguments))
    return out


def argument_pieces(arguments, count):
    """`arguments` cut into `count` pieces (fewer for short text), anywhere,
    inside strings and keys too, as OpenAI streams them."""
    count = max(1, min(int(count), len(arguments) or 1))
    step = -(-len(arguments) // count) if arguments else 1
    return [arguments[i:i + step] for i in range(0, len(arguments), step)] or [""]


def tool_call_usage(messages, calls):
    return usage_object(messages, [a for _, _, a in calls])


def tool_call_completion(model, calls, usage):
    answer = completion_object(model, None, usage)
    choice = answer["choices"][0]
    choice["message"]["tool_calls"] = [
        {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
        for cid, name, args in calls]
    choice["finish_reason"] = "tool_calls"
    return answer


def tool_call_stream_events(model, calls, usage, include_usage, pieces):
    """chat.completion.chunk objects of a streamed tool call: per call, a
    delta naming it (index, id, function name, empty arguments), then its
    arguments in pieces; finish_reason "tool_calls"; None is [DONE]."""
    base = {"id": completion_id(), "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT}

    def chunk(delta, finish_reason=None):
        obj = dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None,
                                   "finish_reason": finish_reason}])
        if include_usage:
            obj["usage"] = None
        return obj

    events = [chunk({"role": "assistant", "content": None, "refusal": None})]
    for index, (cid, name, args) in enumerate(calls):
        events.append(chunk({"tool_calls": [{"index": index, "id": cid, "type": "function",
                                             "function": {"name": name, "arguments": ""}}]}))
        events += [chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                   for piece in argument_pieces(args, pieces)]
    events.append(chunk({}, "tool_calls"))
    if include_usage:
        events.append(dict(base, choices=[], usage=usage))
    events.append(None)
    return events


def responses_tool_call_items(calls, status="completed"):
    return [{"id": "fc_" + secrets.token_hex(24), "type": "function_call", "status": status,
             "call_id": cid, "name": name, "arguments": args} for cid, name, args in calls]


def responses_tool_call_events(model, calls, usage, pieces):
    """The named events of a streamed Responses API answer that calls
    functions: per call, response.output_item.added (arguments ""), its
    response.function_call_arguments.delta pieces, .done, and
    response.output_item.done; then response.completed."""
    items = responses_tool_call_items(calls)
    final = dict(response_object(model, "", usage), output=items)
    started = dict(final, status="in_progress", output=[], usage=None)
    seq = iter(range(10_000))

    def ev(name, **fields):
        return (name, dict({"type": name, "sequence_number": next(seq)}, **fields))

    events = [ev("response.created", response=started),
              ev("response.in_progress", response=started)]
    for index, item in enumerate(items):
        events.append(ev("response.output_item.added", output_index=index,
                         item=dict(item, status="in_progress", arguments="")))
        events += [ev("response.function_call_arguments.delta", item_id=item["id"],
                      output_index=index, delta=piece)
                   for piece in argument_pieces(item["arguments"], pieces)]
        events += [ev("response.function_call_arguments.done", item_id=item["id"],
                      output_index=index, arguments=item["arguments"]),
                   ev("response.output_item.done", output_index=index, item=item)]
    events.append(ev("response.completed", response=final))
    return events


def moderation_response(body):
    inputs = body.get("input")
    inputs = inputs if isinstance(inputs, list) else [inputs]
    categories = ["harassment", "hate", "self-harm", "sexual", "violence"]
    results = []
    for value in inputs:
        flagged = isinstance(value, str) and "forbidden" in value.lower()
        results.append({"flagged": flagged,
                        "categories": {c: flagged and c == "violence" for c in categories},
                        "category_scores": {c: 0.9 if flagged and c == "violence" else 0.001
                                            for c in categories}})
    return {"id": "modr-" + secrets.token_hex(12),
            "model": body.get("model") or "omni-moderation-latest", "results": results}


def image_response(body):
    count = int(body.get("n") or 1)
    prompt = body.get("prompt") if isinstance(body.get("prompt"), str) else ""
    tokens = len(prompt.split())
    return {"created": int(time.time()),
            "data": [{"b64_json": "aW1hZ2U=", "revised_prompt": prompt} for _ in range(count)],
            "usage": {"input_tokens": tokens, "output_tokens": 272 * count,
                      "total_tokens": tokens + 272 * count}}


def multipart_parts(content_type, raw):
    """(fields {name: text}, files [{field, filename, content_type, bytes,
    sha256}]) of a multipart/form-data body; None when it is not one."""
    if not content_type or not content_type.lower().startswith("multipart/form-data"):
        return None
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    if not message.is_multipart():
        return None
    fields, files = {}, []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is None:
            fields[name] = payload.decode("utf-8", "replace")
        else:
            files.append({"field": name, "filename": filename,
                          "content_type": part.get_content_type(), "bytes": len(payload),
                          "sha256": hashlib.sha256(payload).hexdigest()})
    return fields, files


def embedding_vector(text, dims):
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    return [round(rng.uniform(-0.1, 0.1), 8) for _ in range(dims)]


def embeddings_response(body):
    inputs = body.get("input")
    inputs = inputs if isinstance(inputs, list) else [inputs]
    texts = [x if isinstance(x, str) else json.dumps(x) for x in inputs]
    dims = int(body.get("dimensions") or 1536)
    tokens = sum(len(t.split()) for t in texts)
    as_base64 = body.get("encoding_format") == "base64"  # what the SDKs ask for

    def encoded(vector):
        if not as_base64:
            return vector
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return {"object": "list",
            "data": [{"object": "embedding", "index": i,
                      "embedding": encoded(embedding_vector(t, dims))}
                     for i, t in enumerate(texts)],
            "model": body.get("model") or "text-embedding-ada-002",
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def openai_headers(started):
    return [
        ("openai-version", "2020-10-01"),
        ("openai-processing-ms", str(int((time.monotonic() - started) * 1000))),
        ("x-request-id", "req_" + secrets.token_hex(16)),
        ("x-ratelimit-limit-requests", "10000"),
        ("x-ratelimit-remaining-requests", "9999"),
        ("x-ratelimit-limit-tokens", "200000"),
        ("x-ratelimit-remaining-tokens", "199000"),
        ("x-ratelimit-reset-requests", "6ms"),
        ("x-ratelimit-reset-tokens", "300ms"),
        ("Set-Cookie", "__cf_bm=mock; path=/"),
    ]


# --------------------------------------------------------------------------
# Shared state
# --------------------------------------------------------------------------

class MockState:
    """Thread-safe counters and request records.

    Connections whose first request is a control request (the tests' own
    queries) are taken out of the connection counters, so that these count
    only the connections of the client under test.
    """

    def __init__(self, profile="openai"):
        self._lock = threading.Lock()
        self.default_profile = profile  # --profile: what a reset restores
        self._last_connection_id = 0  # never reset: ids stay unique across resets
        self._generation = 0  # bumped by reset()
        self.connections_open = 0
        self.active_streams = 0
        self._gate_opened = threading.Condition(self._lock)
        self._clear()

    def _clear(self):
        self.records = collections.deque(maxlen=MAX_RECORDS)
        self.gates = collections.Counter()  # gate name -> permits not yet used
        self.connections_accepted = 0
        self.requests = 0
        self.profile = getattr(self, "default_profile", "openai")
        self.directives = {}  # POST /__mock/directives: under every request's own

    def set_directives(self, directives):
        if not isinstance(directives, dict):
            raise ValueError("the directives must be a JSON object")
        with self._lock:
            self.directives = dict(directives)

    def reset(self):
        with self._lock:
            self._generation += 1
            self._clear()

    def set_profile(self, name):
        if name not in PROFILES:
            raise ValueError(f"unknown profile {name!r}")
        with self._lock:
            self.profile = name

    def connection_opened(self):
        """Count a new connection; returns (connection id, reset generation)."""
        with self._lock:
            self._last_connection_id += 1
            self.connections_accepted += 1
            self.connections_open += 1
            return self._last_connection_id, self._generation

    def connection_closed(self):
        with self._lock:
            self.connections_open -= 1

    def uncount_control_connection(self, generation):
        with self._lock:
            self.connections_open -= 1
            if generation == self._generation:
                self.connections_accepted -= 1

    def open_gate(self, name, permits=1):
        with self._lock:
            self.gates[name] += permits
            self._gate_opened.notify_all()

    def take_gate(self, name, wait):
        """Uses one permit of the gate, waiting up to `wait` s; False if none came."""
        with self._lock:
            if self.gates[name] <= 0:
                self._gate_opened.wait(wait)
            if self.gates[name] <= 0:
                return False
            self.gates[name] -= 1
            return True

    def adjust_streams(self, delta):
        with self._lock:
            self.active_streams += delta

    def new_record(self, **fields):
        with self._lock:
            self.requests += 1
            record = dict(seq=self.requests, **fields)
            self.records.append(record)
            return record

    def update(self, record, **fields):
        with self._lock:
            record.update(fields)

    def add_chunks(self, record, count):
        with self._lock:
            record["chunks_sent"] += count

    def records_json(self):
        with self._lock:
            return json_compact(list(self.records))

    def last_record_json(self):
        with self._lock:
            return json_compact(self.records[-1]) if self.records else None

    def stats_json(self):
        with self._lock:
            return json_compact({"connections_accepted": self.connections_accepted,
                                 "connections_open": self.connections_open,
                                 "requests": self.requests,
                                 "active_streams": self.active_streams})


# --------------------------------------------------------------------------
# HTTP handling
# --------------------------------------------------------------------------

class MockHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-openai-upstream/1.0"
    disable_nagle_algorithm = True
    timeout = 300  # idle keep-alive connections are closed after this
    chunked = True  # stream with chunked framing; False for HTTP/1.0 clients
    compressor = None  # the gzip stream of a `gzip` stream

    # -- connection lifecycle and logging ----------------------------------

    def setup(self):
        super().setup()
        self.connection_id, self.generation = self.server.state.connection_opened()
        self.counted = True  # still in the connection counters
        self.api_requests = 0

    def finish(self):
        try:
            super().finish()
        finally:
            if self.counted:
                self.server.state.connection_closed()

    def log_message(self, fmt, *args):
        if not self.server.quiet:
            sys.stderr.write("mock-upstream: %s conn=%s %s\n" % (
                self.client_address[0], getattr(self, "connection_id", "-"), fmt % args))

    def log_request(self, code="-", size="-"):
        """Replaced by the one line per request written by dispatch()."""

    # -- request entry points ----------------------------------------------

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def dispatch(self):
        self.started = time.monotonic()
        self.protocol_version = MockHandler.protocol_version  # http10 changes it
        try:
            raw = self.read_body()
        except (ValueError, OSError) as exc:
            self.close_connection = True
            self.log_message("%s %s -> unreadable request body (%s)", self.command, self.path, exc)
            return
        if self.path.startswith(CONTROL_PREFIX):
            if self.counted and not self.api_requests:
                self.server.state.uncount_control_connection(self.generation)
                self.counted = False
            status = self.handle_control(raw)
            self.log_message("%s %s -> %s", self.command, self.path, status)
            return
        self.api_requests += 1
        self.raw_body = raw
        query = urllib.parse.urlsplit(self.path).query
        record = self.server.state.new_record(
            time=time.time(), method=self.command, path=self.path,
            query=dict(urllib.parse.parse_qsl(query, keep_blank_values=True)),
            query_string=query, headers=self.header_dict(),
            body_len=len(raw), body_sha256=hashlib.sha256(raw).hexdigest(),
            body_raw=raw.decode("utf-8", "replace"),
            body=parse_json(raw), connection_id=self.connection_id, status=None,
            outcome=None, ended_at=None, chunks_sent=0, gate_timeouts=0, usage_sent=None)
        try:
            outcome = self.handle_api(record)
        except OSError:
            outcome = "client_gone"
        except Exception as exc:  # a bug or a bad directive: answer 500, keep serving
            outcome = "error"
            sys.stderr.write("mock-upstream: handler error\n" + traceback.format_exc())
            self.fail(record, exc)
        if outcome != "ok":
            self.close_connection = True
        self.server.state.update(record, outcome=outcome, ended_at=time.time())
        self.log_message("%s %s -> %s %s", self.command, self.path,
                         record["status"] or "-", outcome)

    def header_dict(self):
        headers = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return headers

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self.read_chunked_body()
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length > 0 else b""
        if len(data) < length:
            raise ValueError("request body truncated")
        return data

    def read_chunked_body(self):
        parts = []
        while True:
            line = self.rfile.readline(65537)
            if not line:
                raise ValueError("EOF inside chunked request body")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                break
            data = self.rfile.read(size)
            if len(data) < size:
                raise ValueError("chunked request body truncated")
            parts.append(data)
            self.rfile.readline()  # CRLF closing the chunk
        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
            pass  # trailer fields
        return b"".join(parts)

    # -- control endpoints -------------------------------------------------

    def handle_control(self, raw=b""):
        state = self.server.state
        path = self.path.split("?", 1)[0]
        route = (self.command, path[len(CONTROL_PREFIX):])
        status, payload = 200, json_compact({"ok": True})
        if route == ("GET", "requests"):
            payload = state.records_json()
        elif route == ("GET", "requests/last"):
            payload = state.last_record_json()
            if payload is None:
                status, payload = 404, json_compact({"error": "no request recorded"})
        elif route == ("POST", "reset"):
            state.reset()
        elif route == ("GET", "stats"):
            payload = state.stats_json()
        elif route[0] == "POST" and route[1].startswith("profile/"):
            try:
                state.set_profile(urllib.parse.unquote(route[1][len("profile/"):]))
            except ValueError as exc:
                status, payload = 400, json_compact({"error": str(exc)})
        elif route == ("POST", "directives"):
            try:
                state.set_directives(json.loads(raw or b"{}"))
            except ValueError as exc:
                status, payload = 400, json_compact({"error": str(exc)})
        elif route[0] == "POST" and route[1].startswith("gate/"):
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            state.open_gate(urllib.parse.unquote(route[1][len("gate/"):]),
                            int(query.get("permits", 1)))
        elif route != ("GET", "health"):
            status, payload = 404, json_compact(
                {"error": f"unknown control endpoint {self.command} {path}"})
        self.send_response(status)
        self.send_header("Content-Type", JSON_CONTENT_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        return status

    # -- API endpoints -----------------------------------------------------

    def directives(self, body):
        """The mock-wide directives (POST /__mock/directives), overridden key by
        key by the x-mock header's, and those by body["mock"]."""
        directives = dict(self.server.state.directives)
        header = self.headers.get("x-mock")
        if header:
            parsed = json.loads(header)
            if not isinstance(parsed, dict):
                raise ValueError("x-mock header must hold a JSON object")
            directives.update(parsed)
        if isinstance(body, dict) and isinstance(body.get("mock"), dict):
            directives.update(body["mock"])
        name = directives.get("profile", self.server.state.profile)
        if name not in PROFILES:
            raise ValueError(f"unknown profile {name!r}; one of {', '.join(PROFILES)}")
        return dict(PROFILES[name], **directives)

    def handle_api(self, record):
        """Answer an API request; returns the outcome."""
        body = record["body"]
        d = self.directives(body)
        if d.get("delay_headers") and self.pause(record, d, float(d["delay_headers"])):
            return "client_gone"
        if d.get("hangup_before_headers"):
            self.hang_up()
            return "hangup"
        if d.get("malformed"):
            self.wfile.write(b"garbage\r\n\r\n")
            self.hang_up()
            return "hangup"
        body = body if isinstance(body, dict) else {}
        model = body.get("model") if isinstance(body.get("model"), str) else DEFAULT_MODEL
        if "echo_key" in d:
            return self.echo_key(record, d)
        if "status" in d or "error_body" in d:
            status = int(d.get("status", 500))
            payload = (str(d["error_body"]).encode() if "error_body" in d
                       else canned_error(status, model))
            return self.send_body(record, d, status, payload)
        path = self.path.split("?", 1)[0]
        route = {("POST", "chat/completions"): self.chat_completions,
                 ("POST", "completions"): self.completions,
                 ("GET", "models"): self.models,
                 ("POST", "embeddings"): self.embeddings,
                 ("POST", "responses"): self.responses_api,
                 ("POST", "moderations"): self.moderations,
                 ("POST", "images/generations"): self.images,
                 ("POST", "audio/transcriptions"): self.transcriptions,
                 ("POST", "audio/translations"): self.transcriptions}
        handler = next((h for (method, suffix), h in route.items()
                        if self.command == method and path.endswith("/" + suffix)), None)
        model_id = re.search(r"/models/([^/]+)$", path)
        if handler is None and self.command == "GET" and model_id:
            return self.model(record, d, urllib.parse.unquote(model_id.group(1)))
        if handler is None:
            return self.send_body(record, d, 404,
                                  error_body(f"Invalid URL ({self.command} {path})"))
        if (self.command == "POST" and handler != self.transcriptions
                and not isinstance(record["body"], dict) and not d):
            return self.send_body(record, d, 400, error_body(UNPARSABLE_JSON))
        if "tool_calls" in d and handler in (self.chat_completions, self.responses_api):
            return self.tool_call_answer(record, d, body, model,
                                         responses=handler == self.responses_api)
        return handler(record, d, body, model)

    def tool_call_answer(self, record, d, body, model, responses):
        """The model calls the functions of the tool_calls directive (chat or
        Responses API, whole or streamed, arguments in tool_args_pieces
        pieces, default 3)."""
        calls = tool_call_specs(d)
        pieces = d.get("tool_args_pieces", 3)
        stream = d.get("stream", body.get("stream"))
        if responses:
            messages = response_input_messages(body)
            usage = responses_usage(messages, [a for _, _, a in calls])
            if not stream:
                answer = dict(response_object(model, "", usage),
                              output=responses_tool_call_items(calls))
                return self.send_body(record, d, 200, json_pretty(answer))
            return self.stream(record, d, responses_tool_call_events(model, calls, usage,
                                                                     pieces))
        messages = request_messages(body)
        usage = tool_call_usage(messages, calls)
        if not stream:
            return self.send_body(record, d, 200,
                                  json_pretty(tool_call_completion(model, calls, usage)))
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        return self.stream(record, d, tool_call_stream_events(model, calls, usage,
                                                              include_usage, pieces))

    def received_key(self):
        """The credential this request carried: a bearer token, else the
        whole Authorization value, else an api-key header (header auth)."""
        auth = self.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:]
        return auth or self.headers.get("api-key", "")

    def echo_key(self, record, d):
        """An error answer that quotes the credential it rejected, as some
        APIs do: echo_key full (the whole key), prefix (its first
        echo_key_chars characters, default 12, then "..."), openai (the
        first echo_key_chars, default 8, then '*' for the middle, then the
        last 4). status (default 401); echo_key_text: a text/plain body
        instead of JSON; echo_key_header NAME: the echo in that response
        header too. The same answer for stream requests (as OpenAI does)."""
        key, form = self.received_key(), d["echo_key"]
        if form == "full":
            echo = key
        elif form == "prefix":
            echo = key[:int(d.get("echo_key_chars", 12))] + "..."
        elif form == "openai":
            n = int(d.get("echo_key_chars", 8))
            echo = key[:n] + "*" * max(0, len(key) - n - 4) + key[-4:]
        else:
            raise ValueError(f"echo_key must be full, prefix or openai, not {form!r}")
        message = (f"Incorrect API key provided: {echo}. You can find your API key at "
                   "https://platform.openai.com/account/api-keys.")
        if d.get("echo_key_text"):
            d = dict(d, content_type="text/plain; charset=utf-8")
            payload = f"Unauthorized. {message}\n".encode()
        else:
            payload = error_body(message, "invalid_request_error", "invalid_api_key")
        if d.get("echo_key_header"):
            d = dict(d, raw_headers=list(d.get("raw_headers", [])) +
                     [[d["echo_key_header"], echo]])
        return self.send_body(record, d, int(d.get("status", 401)), payload)

    def models(self, record, d, body, model):
        return self.send_body(record, d, 200, json_pretty(models_list()))

    def model(self, record, d, model_id):
        found = model_object(model_id)
        if found is None:
            return self.send_body(record, d, 404, error_body(
                f"The model '{model_id}' does not exist", code="model_not_found"))
        return self.send_body(record, d, 200, json_pretty(found))

    def responses_api(self, record, d, body, model):
        messages = response_input_messages(body)
        pieces = content_pieces(d, messages)
        usage = responses_usage(messages, pieces)
        if not d.get("stream", body.get("stream")):
            return self.send_body(record, d, 200, self.body_json(
                d, response_object(model, "".join(pieces), usage)))
        return self.stream(record, d, responses_stream_events(model, pieces, usage))

    def moderations(self, record, d, body, model):
        return self.send_body(record, d, 200, json_pretty(moderation_response(body)))

    def images(self, record, d, body, model):
        return self.send_body(record, d, 200, json_pretty(image_response(body)))

    def transcriptions(self, record, d, body, model):
        parsed = multipart_parts(self.headers.get("Content-Type"), self.raw_body)
        if parsed is None:
            return self.send_body(record, d, 400, error_body(
                "Expected a multipart/form-data body (mock upstream)."))
        fields, files = parsed
        if not any(f["field"] == "file" for f in files):
            return self.send_body(record, d, 400, error_body(
                "Missing the file part (mock upstream).", code="missing_file"))
        answer = {"text": d.get("reply", "This is a mock transcription."),
                  "mock_received": {"fields": fields, "files": files}}
        return self.send_body(record, d, 200, json_pretty(answer))

    def embeddings(self, record, d, body, model):
        return self.send_body(record, d, 200, json_pretty(embeddings_response(body)))

    def chat_completions(self, record, d, body, model):
        refusal = openai_refusal(body, d)
        if refusal is not None:
            return self.send_body(record, d, 400, refusal)
        messages = request_messages(body)
        pieces = content_pieces(d, messages)
        usage = usage_object(messages, pieces)
        if not d.get("stream", body.get("stream")):
            completion = completion_object(model, "".join(pieces), usage, d)
            if d.get("no_usage"):
                del completion["usage"]
            return self.send_body(record, d, 200, self.body_json(d, completion))
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        return self.stream(record, d, stream_events(model, pieces, usage, include_usage, d,
                                                    options))

    def completions(self, record, d, body, model):
        refusal = openai_refusal(body, d)
        if refusal is not None:
            return self.send_body(record, d, 400, refusal)
        prompt = body.get("prompt", "")
        text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
        messages = [{"role": "user", "content": text}]
        pieces = content_pieces(d, messages)
        usage = usage_object(messages, pieces)
        if not d.get("stream", body.get("stream")):
            answer = {"id": "cmpl-" + completion_id()[9:], "object": "text_completion",
                      "created": int(time.time()), "model": model,
                      "choices": [{"text": "".join(pieces), "index": 0, "logprobs": None,
                                   "finish_reason": "stop"}], "usage": usage}
            return self.send_body(record, d, 200, json_pretty(answer))
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        return self.stream(record, d, text_completion_events(model, pieces, usage,
                                                             include_usage))

    # -- response writing --------------------------------------------------

    @staticmethod
    def body_json(d, obj):
        """A whole answer's JSON: pretty-printed as OpenAI sends it, or in the
        profile's `body_format`."""
        return format_json(obj, d.get("body_format", "pretty"))

    def send_api_headers(self, record, d, status, content_type, length=None):
        """Status line and OpenAI-like headers; length None means a streamed
        body. `http10` answers HTTP/1.0 and `close_delimited` HTTP/1.1 with
        Connection: close, both without Content-Length or chunking: the body
        ends when the connection closes. `gzip` says Content-Encoding: gzip."""
        self.server.state.update(record, status=status)
        close_delimited = bool(d.get("http10") or d.get("close_delimited"))
        if d.get("http10"):
            self.protocol_version = "HTTP/1.0"
        self.send_response(status)
        for name, value in openai_headers(self.started):
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        if d.get("gzip"):
            self.send_header("Content-Encoding", "gzip")
        # raw_headers [[name, value], ...]: written as given, CR, LF, NUL and
        # all (send_header does not check them), after the usual ones; with a
        # third item "escaped", the value's backslash escapes (\x00) are decoded
        # first (a JSON request body cannot carry a NUL to the mock)
        for name, value, *how in d.get("raw_headers", []):
            if how == ["escaped"]:
                value = value.encode("latin-1").decode("unicode_escape")
            self._headers_buffer.append(f"{name}: {value}\r\n".encode("latin-1"))
        if length is not None and not close_delimited:
            self.send_header("Content-Length", str(length))
        elif length is None and self.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        if not d.get("http10") and (d.get("close") or close_delimited or
                                    (length is None and not self.chunked)):
            self.send_header("Connection", "close")
        if close_delimited:
            self.close_connection = True
        self.end_headers()

    def send_body(self, record, d, status, payload):
        if d.get("bom"):
            payload = UTF8_BOM + payload
        reported = reported_usage(parse_json(payload.removeprefix(UTF8_BOM)))
        self.server.state.update(record, sent_sha256=hashlib.sha256(payload).hexdigest(),
                                 usage_sent=reported)
        if d.get("gzip"):
            payload = gzip.compress(payload)
        self.send_api_headers(record, d, status, d.get("content_type", JSON_CONTENT_TYPE),
                              len(payload))
        self.wfile.write(payload)
        return "ok"

    def write_chunk(self, data):
        """One HTTP chunk (raw bytes for HTTP/1.0 clients and close-delimited
        answers), sent in one write; with `gzip`, the compressed bytes of
        `data`, flushed so that each write decodes on its own."""
        if self.compressor is not None and data:
            data = self.compressor.compress(data) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)
            self.wfile.flush()

    def stream(self, record, d, events):
        close_delimited = bool(d.get("http10") or d.get("close_delimited"))
        self.chunked = self.request_version != "HTTP/1.0" and not close_delimited
        self.compressor = zlib.compressobj(wbits=31) if d.get("gzip") else None
        hangup_after = d.get("hangup_after")
        if hangup_after is not None:
            events = events[:int(hangup_after)]
        coalesce = max(1, int(d.get("coalesce", 1)))
        groups = [events[i:i + coalesce] for i in range(0, len(events), coalesce)]
        chunk_delay = float(d.get("chunk_delay", DEFAULT_CHUNK_DELAY))
        prefix = str(d.get("data_prefix", "data: ")).encode()
        if d.get("line_end", "lf") not in LINE_ENDS:
            raise ValueError(f"line_end must be one of {', '.join(LINE_ENDS)}")
        eol = LINE_ENDS[d.get("line_end", "lf")]
        state = self.server.state
        sent = hashlib.sha256()  # of the body bytes written so far (before gzip)
        self.send_api_headers(record, d, 200, d.get("content_type", SSE_CONTENT_TYPE))
        state.adjust_streams(+1)
        try:
            if d.get("first_chunk_delay") and self.pause(record, d,
                                                         float(d["first_chunk_delay"])):
                return "client_gone"
            for index, group in enumerate(groups):
                if index and self.pause(record, d, chunk_delay, gated=shown_to_client(group)):
                    return "client_gone"
                payload = b"".join(render_event(e, d.get("timestamps"), d.get("event_format"),
                                                prefix, eol) for e in group)
                if index == len(groups) - 1 and d.get("unterminated"):
                    payload = payload[:-len(eol)]  # no blank line after the last event
                if index == 0 and d.get("comment"):
                    payload = b": " + str(d["comment"]).encode() + eol + eol + payload
                if index == 0 and d.get("bom"):
                    payload = UTF8_BOM + payload
                    if d["bom"] == "split":  # the mark in two writes of its own
                        sent.update(UTF8_BOM)
                        self.write_chunk(UTF8_BOM[:1])
                        time.sleep(SPLIT_PAUSE)
                        self.write_chunk(UTF8_BOM[1:])
                        time.sleep(SPLIT_PAUSE)
                        payload = payload[len(UTF8_BOM):]
                sent.update(payload)
                usage = next((u for u in map(reported_usage, reversed(group)) if u), None)
                state.update(record, sent_sha256=sent.hexdigest(),
                             **({"usage_sent": usage} if usage else {}))
                if d.get("split_events"):
                    middle = len(payload) // 2
                    self.write_chunk(payload[:middle])
                    time.sleep(SPLIT_PAUSE)
                    self.write_chunk(payload[middle:])
                else:
                    self.write_chunk(payload)
                state.add_chunks(record, len(group))
            if hangup_after is not None:
                self.hang_up()
                return "hangup"
            if d.get("linger_after_done") and self.pause(record, d,
                                                         float(d["linger_after_done"]),
                                                         gated=False):
                return "client_gone"
            if self.compressor is not None:
                tail, self.compressor = self.compressor.flush(), None
                self.write_chunk(tail)
            if self.chunked:
                self.wfile.write(b"0\r\n\r\n")
            return "ok"
        finally:
            state.adjust_streams(-1)

    def pause(self, record, d, seconds, gated=True):
        """A pause of the answer (delay_headers, first_chunk_delay, between
        events): `seconds` long, or with a "gate" directive until the test
        opens that gate (POST /__mock/gate/NAME), which lets a test pace the
        upstream by what its client has received instead of by the clock.
        True as soon as the client has gone."""
        gate = d.get("gate")
        if gate is None or not gated:
            return self.client_gone_during(seconds)
        deadline = time.monotonic() + float(d.get("gate_timeout", GATE_TIMEOUT))
        while not self.server.state.take_gate(str(gate), POLL_INTERVAL):
            if self.client_gone_during(0.001):
                return True
            if time.monotonic() > deadline:
                self.server.state.update(record, gate_timeouts=record["gate_timeouts"] + 1)
                return False
        return False

    def client_gone_during(self, seconds):
        """Wait `seconds` while polling the socket; True as soon as the client has closed."""
        poller = select.poll()
        poller.register(self.connection, select.POLLIN | select.POLLPRI)
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            step = min(POLL_INTERVAL, remaining)
            try:
                if not poller.poll(step * 1000):
                    continue
                if not self.connection.recv(1, socket.MSG_PEEK):
                    return True  # EOF
            except OSError:
                return True
            time.sleep(step)  # readable but not EOF: early next request, keep waiting
        return False

    def hang_up(self):
        """Close the TCP connection abruptly (no terminating chunk)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.connection.close()

    def fail(self, record, exc):
        self.close_connection = True
        if record["status"] is None:
            try:
                self.send_body(record, {"close": True}, 500,
                               error_body(f"mock upstream error: {exc}", "server_error"))
            except OSError:
                pass


class MockServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, address, quiet, profile="openai"):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.state = MockState(profile)
        self.quiet = quiet
        super().__init__(address, MockHandler)

    def server_bind(self):
        # HTTPServer.server_bind does a reverse DNS lookup, which can hang offline.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            sys.stderr.write("mock-upstream: error on connection from %s\n%s"
                             % (client_address[0], traceback.format_exc()))
        elif not self.quiet:
            sys.stderr.write("mock-upstream: %s: %s\n" % (client_address[0], exc))


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(description="Mock OpenAI-compatible upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", help="write the port number here once listening")
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines")
    parser.add_argument("--profile", default="openai", choices=sorted(PROFILES),
                        help="the upstream family requests get unless they name one")
    return parser.parse_args(argv)


def write_port_file(path, port):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.rename(tmp, path)


def raise_fd_limit():
    """Many concurrent streams need many descriptors: lift the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass


def stop(signum, frame):
    raise SystemExit(0)


def main(argv=None):
    args = parse_args(argv)
    threading.stack_size(256 * 1024)
    raise_fd_limit()
    server = MockServer((args.host, args.port), args.quiet, args.profile)
    port = server.server_address[1]
    if args.port_file:
        write_port_file(args.port_file, port)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"mock-upstream listening on http://{host}:{port}", flush=True)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.5)
    except SystemExit:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
