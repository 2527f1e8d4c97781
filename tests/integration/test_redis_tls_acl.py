"""The redis counter store as production runs it: TLS (rediss://, the
server's certificate checked against OpenAIProxyCounterStoreCAFile, for the
host of the URL), an ACL user with only the commands the module needs, a
database of its own, and what each request costs redis (commands and
exchanges, read from INFO). A real redis-server (Debian's, built with TLS),
certificates made with openssl in the test's directory."""

import os
import shutil
import subprocess
import tempfile

import pytest

from harness import (REDIS_PASSWORD, STATUS_LOCATION, THREE_TOKEN_MESSAGES, StoreServer,
                     config_test, proxy_location, settled)

ACL_USER = "oaip"
ACL_PASSWORD = "acl-pw-not-for-logs"
WRONG_PASSWORD = "wrong-pw-not-for-logs"
ADMIN_PASSWORD = "admin-pw-not-for-logs"
PASSWORDS = (REDIS_PASSWORD, ACL_PASSWORD, WRONG_PASSWORD, ADMIN_PASSWORD)
# what the module runs, and nothing else: its keys only
ACL_COMMANDS = "+evalsha +eval +incrby +expire +get +select"


def binary(name):
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: apt-get install redis-server "
                    "(build/deps.sh test installs it)", pytrace=False)
    return path


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_ca(directory, name):
    key, cert = os.path.join(directory, f"{name}.key"), os.path.join(directory, f"{name}.pem")
    openssl("req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-keyout", key, "-out", cert, "-days", "2",
            "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return key, cert


def make_server_cert(directory, ca, name, san):
    key, csr = os.path.join(directory, f"{name}.key"), os.path.join(directory, f"{name}.csr")
    cert, ext = os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
    openssl("req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    openssl("x509", "-req", "-in", csr, "-CA", ca[1], "-CAkey", ca[0], "-CAcreateserial",
            "-out", cert, "-days", "2", "-extfile", ext)
    return key, cert


@pytest.fixture
def own_dir(workdir):
    """A directory of this test's own in the session's workdir."""
    path = tempfile.mkdtemp(dir=workdir, prefix="redis-")
    os.chmod(path, 0o755)
    return path


@pytest.fixture
def pki(own_dir):
    """A CA that signed the server's certificates, and one that did not."""
    directory = os.path.join(own_dir, "pki")
    os.makedirs(directory)
    ca = make_ca(directory, "redis-ca")
    return {
        "ca": ca[1],
        "other_ca": make_ca(directory, "other-ca")[1],
        "server": make_server_cert(directory, ca, "redis-server", "IP:127.0.0.1,DNS:localhost"),
        "elsewhere": make_server_cert(directory, ca, "redis-elsewhere",
                                      "DNS:redis.elsewhere.test"),
    }


def tls_redis(workdir, cert, name):
    data = os.path.join(workdir, f"{name}-data")
    os.makedirs(data, exist_ok=True)
    key, pem = cert
    return StoreServer(lambda port: [
        binary("redis-server"), "--port", "0", "--tls-port", str(port),
        "--bind", "127.0.0.1", "-::1", "--tls-cert-file", pem, "--tls-key-file", key,
        "--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", data,
        "--requirepass", REDIS_PASSWORD]).start()


@pytest.fixture
def tls_server(own_dir, pki):
    server = tls_redis(own_dir, pki["server"], "tls")
    yield server
    server.stop()


@pytest.fixture
def acl_server(own_dir):
    """redis with an admin (the default user) and the module's user, who
    may run its commands on its keys only."""
    data = os.path.join(own_dir, "acl-data")
    os.makedirs(data, exist_ok=True)
    acl = os.path.join(data, "users.acl")
    with open(acl, "w") as f:
        f.write(f"user default on >{ADMIN_PASSWORD} ~* &* +@all\n"
                f"user {ACL_USER} on >{ACL_PASSWORD} ~oaip:* resetchannels -@all "
                f"{ACL_COMMANDS}\n")
    server = StoreServer(lambda port: [
        binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", data, "--aclfile", acl]).start()
    yield server
    server.stop()


def cli(server, *args, password=REDIS_PASSWORD, ca=None, db=None):
    """redis-cli as the admin; the reply text."""
    argv = [binary("redis-cli"), "-h", "127.0.0.1", "-p", str(server.port),
            "--no-auth-warning", "-a", password]
    if ca is not None:
        argv += ["--tls", "--cacert", ca]
    if db is not None:
        argv += ["-n", str(db)]
    return subprocess.run(argv + [str(a) for a in args], capture_output=True, text=True,
                          check=True, timeout=30).stdout


def info(server, section, **kw):
    fields = {}
    for line in cli(server, "INFO", section, **kw).splitlines():
        name, sep, value = line.strip().partition(":")
        if sep:
            fields[name] = value
    return fields


def config(mock, store, *limits, fail=None, ca_file=None):
    return (f"OpenAIProxyCounterStore {store}\n"
            + (f"OpenAIProxyCounterStoreCAFile {ca_file}\n" if ca_file else "")
            + (f"OpenAIProxyCounterStoreFail {fail}\n" if fail else "")
            + proxy_location(mock, *limits) + STATUS_LOCATION)


def post(client):
    return client.post("/v1", {"messages": THREE_TOKEN_MESSAGES, "max_tokens": 10})


def assert_no_password_anywhere(workdir, responses):
    for name in os.listdir(workdir):
        if name.endswith(".log"):
            text = open(os.path.join(workdir, name), errors="replace").read()
            for secret in PASSWORDS:
                assert secret not in text, f"a redis password reached {name}"
    for resp in responses:
        body = resp.body.decode("utf-8", "replace")
        for secret in PASSWORDS:
            assert secret not in body and all(secret not in v for _, v in resp.headers)


def test_rediss_counts_with_the_configured_ca(own_httpd, mock, tls_server, pki, workdir,
                                              responses):
    store = f"rediss://:{REDIS_PASSWORD}@127.0.0.1:{tls_server.port}"
    server, client = own_httpd(config(mock, store, "OpenAIProxyRateLimit 2/h",
                                      "OpenAIProxyTokenBudget 10k/h", ca_file=pki["ca"]))
    assert [post(client).status for _ in range(3)] == [200, 200, 429]
    assert len(mock.requests()) == 2
    keys = cli(tls_server, "KEYS", "oaip:*", ca=pki["ca"]).split()
    assert sorted(k.split(":")[1] for k in keys) == ["r", "t"], keys
    assert_no_password_anywhere(workdir, responses)


def test_rediss_by_name_sends_it_and_checks_it(own_httpd, mock, tls_server, pki):
    # localhost: SNI and the DNS name of the certificate
    store = f"rediss://:{REDIS_PASSWORD}@localhost:{tls_server.port}/2"
    server, client = own_httpd(config(mock, store, "OpenAIProxyRateLimit 1/h", ca_file=pki["ca"]))
    assert [post(client).status for _ in range(2)] == [200, 429]
    assert cli(tls_server, "KEYS", "oaip:*", ca=pki["ca"], db=2).split()
    assert cli(tls_server, "KEYS", "oaip:*", ca=pki["ca"], db=0).split() == []


def test_rediss_refuses_a_server_another_ca_signed(own_httpd, mock, tls_server, pki,
                                                   error_log, workdir, responses):
    error_log.allow("counter store rediss://127.0.0.1:")
    store = f"rediss://:{REDIS_PASSWORD}@127.0.0.1:{tls_server.port}"
    server, client = own_httpd(config(mock, store, "OpenAIProxyRateLimit 5/h", fail="closed",
                                      ca_file=pki["other_ca"]))
    resp = post(client)
    assert resp.status == 503
    assert "Usage limits cannot be checked" in resp.json()["message"]
    assert mock.requests() == []
    log = open(server.error_log).read()
    assert (f"counter store rediss://127.0.0.1:{tls_server.port}: TLS handshake failed: "
            "server certificate not trusted: unable to get local issuer certificate") in log
    assert "refusing requests (OpenAIProxyCounterStoreFail closed)" in log
    assert_no_password_anywhere(workdir, responses)


def test_rediss_refuses_a_certificate_for_another_host(own_httpd, mock, pki, own_dir,
                                                       error_log):
    error_log.allow("counter store rediss://127.0.0.1:")
    elsewhere = tls_redis(own_dir, pki["elsewhere"], "elsewhere")
    try:
        store = f"rediss://:{REDIS_PASSWORD}@127.0.0.1:{elsewhere.port}"
        server, client = own_httpd(config(mock, store, "OpenAIProxyRateLimit 1/h",
                                          ca_file=pki["ca"]))
        # fails open: let through, unlimited, and the log says why
        assert [post(client).status for _ in range(2)] == [200, 200]
        log = open(server.error_log).read()
        assert "TLS handshake failed: server certificate not trusted: IP address mismatch" \
            in log
        assert "limits not applied (OpenAIProxyCounterStoreFail open)" in log
    finally:
        elsewhere.stop()


def test_plain_redis_url_against_tls_port_fails(own_httpd, mock, tls_server, error_log):
    error_log.allow("counter store redis://127.0.0.1:")
    store = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{tls_server.port}"
    server, client = own_httpd(config(mock, store, "OpenAIProxyRateLimit 1/h", fail="closed"))
    assert post(client).status == 503


def test_acl_user_with_only_the_commands_it_needs(own_httpd, mock, acl_server, workdir,
                                                  responses):
    store = f"redis://{ACL_USER}:{ACL_PASSWORD}@127.0.0.1:{acl_server.port}/3"
    # two rate limits and a budget: the script (stop at the first limit
    # reached), the plain commands and the settlements all run as this user
    server, client = own_httpd(config(mock, store, "OpenAIProxyRateLimit 3/h",
                                      "OpenAIProxyRateLimit 100/d",
                                      "OpenAIProxyTokenBudget 10k/h"))
    assert [post(client).status for _ in range(4)] == [200, 200, 200, 429]
    settled(client, 4)
    keys = cli(acl_server, "KEYS", "oaip:*", password=ADMIN_PASSWORD, db=3).split()
    assert sorted(k.split(":")[1] for k in keys) == ["r", "r", "t"], keys
    assert cli(acl_server, "KEYS", "*", password=ADMIN_PASSWORD, db=0).split() == []
    # nothing the user was refused: the list of commands is enough
    assert cli(acl_server, "ACL", "LOG", password=ADMIN_PASSWORD).strip() == ""
    assert_no_password_anywhere(workdir, responses)


def test_acl_wrong_password_refused_with_a_clear_line(own_httpd, mock, acl_server, workdir,
                                                      error_log, responses):
    error_log.allow(f"counter store redis://{ACL_USER}@127.0.0.1:")
    store = f"redis://{ACL_USER}:{WRONG_PASSWORD}@127.0.0.1:{acl_server.port}/3"
    server, client = own_httpd(config(mock, store, "OpenAIProxyRateLimit 3/h", fail="closed"))
    resp = post(client)
    assert resp.status == 503
    assert resp.header("Retry-After") == "1"
    assert mock.requests() == []
    log = open(server.error_log).read()
    assert (f"counter store redis://{ACL_USER}@127.0.0.1:{acl_server.port}/3: login refused: "
            "WRONGPASS") in log
    assert_no_password_anywhere(workdir, responses)


def reads_and_commands(redis):
    stats = info(redis, "stats")
    commands = {}
    for name, value in info(redis, "commandstats").items():
        if name.startswith("cmdstat_"):
            fields = dict(kv.split("=") for kv in value.split(","))
            commands[name[len("cmdstat_"):]] = int(fields["calls"])
    return int(stats["total_reads_processed"]), int(stats["total_connections_received"]), \
        commands


def test_each_phase_of_a_request_is_one_exchange(own_httpd, mock, redis_server):
    """A rate limit and a budget: the check before the body (INCRBY + EXPIRE
    of the rate, GET of the budget), the reservation once the body is known
    (INCRBY + EXPIRE), the settlement after the answer (INCRBY + EXPIRE, not
    waited for): three exchanges, where each used to be one per counter and
    phase (four, eight commands)."""
    store = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_server.port}"
    server, client = own_httpd(config(mock, store, "OpenAIProxyRateLimit 1000/h",
                                      "OpenAIProxyTokenBudget 1M/h"), mpm="prefork")
    # what asking redis costs itself: one redis-cli (its AUTH, its INFO)
    r0, c0, _ = reads_and_commands(redis_server)
    r1, c1, _ = reads_and_commands(redis_server)
    per_look = (r1 - r0) // 2
    requests = 6
    before_reads, before_conns, before = reads_and_commands(redis_server)
    for i in range(requests):
        assert post(client).status == 200
        settled(client, i + 1)
    after_reads, after_conns, after = reads_and_commands(redis_server)
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    delta = {name: n for name, n in delta.items() if n}
    # the two looks of this measure: INFO stats and INFO commandstats, and
    # their AUTH
    delta["info"] -= 2
    delta["auth"] -= 2
    httpd_logins = delta.pop("auth")  # one per connection a child opened
    assert {n: v for n, v in delta.items() if v} == {
        "incrby": 3 * requests, "expire": 3 * requests, "get": requests}, delta
    new_connections = after_conns - before_conns - 2
    assert httpd_logins == new_connections
    exchanges = after_reads - before_reads - 2 * per_look - httpd_logins
    assert exchanges == 3 * requests


BAD_STORES = [
    ("OpenAIProxyCounterStore redis://oaip@127.0.0.1", "a redis user needs a password"),
    ("OpenAIProxyCounterStore rediss://127.0.0.1:6380/x",
     "the database of redis://host:port/db is a number"),
    ("OpenAIProxyCounterStore redis://us%20er:pw-not-shown@127.0.0.1",
     "a redis user name is letters, digits and -._ only"),
    ("OpenAIProxyCounterStore redis://u:pw-not-shown@127.0.0.1/1/2",
     "the database of redis://host:port/db is a number"),
    ("OpenAIProxyCounterStore rediss:/127.0.0.1", "expected shm, redis://host:port"),
    ("OpenAIProxyCounterStoreCAFile /nonexistent/ca.pem",
     "OpenAIProxyCounterStoreCAFile: /nonexistent/ca.pem holds no PEM certificate"),
]


@pytest.mark.parametrize("line,message", BAD_STORES)
def test_bad_store_values_fail_the_config_test(workdir, line, message):
    result = config_test(workdir, line + "\n")
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "pw-not-shown" not in result.stderr


def test_a_ca_file_without_certificates_fails_the_config_test(workdir):
    path = os.path.join(workdir, "not-a-ca.pem")
    with open(path, "w") as f:
        f.write("not a certificate\n")
    result = config_test(workdir, f"OpenAIProxyCounterStoreCAFile {path}\n")
    assert result.returncode != 0
    assert f"{path} holds no PEM certificate that can be read" in result.stderr


def test_good_store_values_pass_the_config_test(workdir, pki):
    result = config_test(workdir,
                         "OpenAIProxyCounterStore rediss://oaip:pw@cache.internal:6380/1\n"
                         f"OpenAIProxyCounterStoreCAFile {pki['ca']}\n")
    assert result.returncode == 0, result.stderr
