"""A short soak (2,000 mixed requests, a few seconds) in the suite: every
request answered as its kind expects, one access log line per request, no
unexpected warn/error line, no httpd process lost. The full soak with the
memory figures is tests/soak/run.sh (100,000 requests, not in the suite)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "soak"))

import soak  # noqa: E402
import valgrind  # noqa: E402


@valgrind.not_under_valgrind("one httpd with two children under load from 4 clients")
def test_short_soak_answers_every_request_quietly():
    result = soak.run(2000, workers=4, log=lambda *_: None)
    assert soak.verdict(result) == [], result
    assert result["sent"] == 2000
