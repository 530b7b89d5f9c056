"""Two submitd nodes behind a real HAProxy, sharing one PostgreSQL (issue 13).

The parts are the real ones: a private PostgreSQL cluster (scripts/pg-test-cluster.sh),
two nodes with their own spools and ports but the same database URI and the same CA
(one `submit-ca init`), each with proxy_protocol = v2 and only 127.0.0.1 trusted;
HAProxy in TCP mode, round robin with send-proxy-v2 and health checks, in front of
both; one aiosmtpd upstream. The client connects from 127.0.0.2. The nodes tell
themselves apart by their hostname setting, which their EHLO reply names.
"""

import shutil
import smtplib
import socket
import subprocess

import pytest

from conftest import (Daemon, Env, build_stack, client_context,
                      free_port, make_message, poll, port_accepts, queue_id, reply_text,
                      submit, unique_rcpt)
from test_postgresql import CLUSTER, Cluster
from test_proxy import ProxiedSMTP, closed_without_greeting, v2_header

CLIENT = "127.0.0.2"           # a loopback alias: the roaming user behind the balancer
RATE = 4                       # rate_messages_per_hour of both nodes; every test
                               # sends as its own user so that each has a fresh count
REJECTED = "535 5.7.8 Client certificate rejected: "
NODES = ("node1.test", "node2.test")


def haproxy_exe():
    return shutil.which("haproxy") or (shutil.which("/usr/sbin/haproxy"))


class Balancer:
    """A private haproxy in the foreground: TCP mode, round robin over both nodes."""

    def __init__(self, directory, ports):
        self.port = free_port()
        self.cfg = directory / "haproxy.cfg"
        self.log = directory / "haproxy.log"
        servers = "\n".join(
            f"    server node{i} 127.0.0.1:{p} send-proxy-v2 check check-send-proxy"
            f" inter 500ms fall 1 rise 1" for i, p in enumerate(ports, 1))
        self.cfg.write_text(f"""\
global
    maxconn 200

defaults
    mode tcp
    timeout connect 2s
    # A greeting slower than the 500 ms between checks (a busy machine, a sanitizer
    # build) is not a node down.
    timeout check 3s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch 1

frontend submission
    bind 127.0.0.1:{self.port}
    default_backend nodes

# A node is up once it greets: the check opens with a PROXY header (LOCAL) and waits
# for the 220, as docs/scale-out.md recommends.
backend nodes
    balance roundrobin
    option tcp-check
    tcp-check expect string 220
{servers}
""")
        self.proc = None

    def start(self):
        check = subprocess.run([haproxy_exe(), "-c", "-f", str(self.cfg)],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([haproxy_exe(), "-db", "-f", str(self.cfg)],
                                         stdout=out, stderr=subprocess.STDOUT)
        assert poll(lambda: port_accepts(self.port), 10), self.log.read_text()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Site:
    """Both nodes, the balancer, the shared database and upstream."""

    def __init__(self, cluster, node1, env2, daemon2, balancer):
        self.cluster = cluster
        self.node1 = node1                 # a Stack: the CA, alice and the upstream
        self.env1 = node1.env
        self.env2 = env2
        self.daemons = {NODES[0]: node1.daemon, NODES[1]: daemon2}
        self.upstream = node1.upstream
        self.balancer = balancer

    def session(self, identity, port=None, header=None):
        """A STARTTLS session from CLIENT through the balancer (or, with header, to a
        node's own port from the trusted address); returns (smtp, node hostname)."""
        if header is None:
            s = smtplib.SMTP("127.0.0.1", port or self.balancer.port, local_hostname="roaming.test",
                             timeout=15, source_address=(CLIENT, 0))
        else:
            s = ProxiedSMTP(header, "127.0.0.1", port, local_hostname="roaming.test", timeout=15)
        try:
            assert s.ehlo()[0] == 250
            s.starttls(context=client_context(self.env1, identity))
            code, resp = s.ehlo()
            assert code == 250
        except Exception:
            s.close()
            raise
        return s, resp.decode().splitlines()[0].split()[0]

    def send(self, identity, msg, **kw):
        """One message in one session: (queue id, node hostname)."""
        s, node = self.session(identity, **kw)
        try:
            return queue_id(submit(s, msg)), node
        finally:
            try:
                s.quit()
            except smtplib.SMTPException:
                s.close()

    def mail_reply(self, identity):
        s, node = self.session(identity)
        try:
            return reply_text(*s.mail(identity.email)), node
        finally:
            try:
                s.quit()
            except smtplib.SMTPException:
                s.close()


@pytest.fixture(scope="module")
def site(request):
    if not haproxy_exe():
        pytest.skip("haproxy is not installed (scripts/install-deps.sh installs it)")
    proc = subprocess.run(CLUSTER + ["start"], capture_output=True, text=True, timeout=180)
    if proc.returncode == 3:
        pytest.skip(proc.stderr.strip())
    assert proc.returncode == 0, f"the private PostgreSQL did not start:\n{proc.stderr}"
    cluster = Cluster(proc.stdout.splitlines()[0])
    failed_before = request.session.testsfailed
    common = dict(database=cluster.dsn, proxy_protocol="v2", proxy_trusted="127.0.0.1/32",
                  rate_messages_per_hour=RATE)
    node1 = env2 = daemon2 = balancer = None
    try:
        node1 = build_stack("node1", hostname=NODES[0], **common)
        # The second node shares the first one's CA, server certificate and upstream:
        # one `submit-ca init` for the site, one spool and one pair of ports per node.
        d1 = node1.env.dir
        env2 = Env("node2", hostname=NODES[1], ca_dir=d1 / "ca", client_ca=d1 / "ca" / "ca.crt",
                   tls_cert=d1 / "server.crt", tls_key=d1 / "server.key",
                   upstream=node1.env.settings["upstream"], **common)
        daemon2 = Daemon(env2).start()
        balancer = Balancer(d1, [node1.env.port, env2.port])
        balancer.start()
        yield Site(cluster, node1, env2, daemon2, balancer)
    finally:
        keep = request.session.testsfailed > failed_before
        if balancer is not None:
            balancer.stop()
        if daemon2 is not None:
            daemon2.stop()
        if env2 is not None:
            env2.cleanup(keep)
        try:
            # Fails on sanitizer reports in the first node's log: the cluster goes anyway.
            if node1 is not None:
                node1.close(keep=keep)
        finally:
            cluster.stop()


def audit_of(site, qid):
    return site.cluster.psql(
        "SELECT client_ip, decision FROM audit WHERE queue_id = :'p1' AND event = 'submission'",
        qid)


def test_messages_through_the_balancer_reach_upstream_from_both_nodes(site):
    alice = site.node1.alice
    sent = []
    # Round robin: within a few sessions both nodes have served one (other connections,
    # such as the fixture's probe of the balancer's port, move the turn).
    while len(sent) < RATE and {node for _, node, _ in sent} != set(NODES):
        msg = make_message(rcpts=[unique_rcpt("two-nodes")])
        qid, node = site.send(alice, msg)
        sent.append((qid, node, msg))
    assert {node for _, node, _ in sent} == set(NODES), sent
    for qid, node, msg in sent:
        site.upstream.wait_for(msg.marker, msg.rcpts)
        # The shared audit names the client behind the balancer, whichever node wrote it.
        rows = poll(lambda: audit_of(site, qid), 10)
        assert rows == [[CLIENT, "accept"]], (node, rows)
    # Each node logged its own session under the client's address.
    for node, daemon in site.daemons.items():
        assert f"connect from [{CLIENT}] via PROXY from [127.0.0.1]" in daemon.tail(10_000_000), node


def test_direct_connection_without_header_is_not_served(site):
    for env in (site.env1, site.env2):
        for source, payload in ((CLIENT, b"EHLO direct.test\r\n"), ("127.0.0.1", b"EHLO direct.test\r\n")):
            sock = socket.create_connection(("127.0.0.1", env.port), timeout=15,
                                            source_address=(source, 0))
            sock.sendall(payload)
            assert closed_without_greeting(sock, timeout=10), (env.settings["hostname"], source)


def test_revocation_reaches_both_nodes(site):
    dave = site.env1.issue("dave", "dave@example.com")
    seen = set()
    for _ in range(4):
        reply, node = site.mail_reply(dave)
        assert reply.startswith("250"), (node, reply)
        seen.add(node)
    assert seen == set(NODES)
    site.env1.ca("revoke", "--user", "dave", "--reason", "keyCompromise")
    seen = set()
    for _ in range(4):
        reply, node = site.mail_reply(dave)
        assert reply.startswith(REJECTED) and "revoked" in reply.lower(), (node, reply)
        seen.add(node)
    assert seen == set(NODES)


def test_rate_limit_counts_across_nodes(site):
    erin = site.env1.issue("erin", "erin@example.com")
    nodes = []
    for _ in range(RATE):
        msg = make_message(mail_from=erin.email, rcpts=[unique_rcpt("rate")])
        _, node = site.send(erin, msg)
        nodes.append(node)
    # Both nodes took part, so neither alone has reached the limit.
    assert set(nodes) == set(NODES), nodes
    for _ in range(2):
        s, node = site.session(erin)
        try:
            # The limit is checked at MAIL once reached, at RCPT while being reached.
            reply = reply_text(*s.mail(erin.email))
            if reply.startswith("250"):
                reply = reply_text(*s.rcpt(unique_rcpt("rate")))
            assert reply.startswith("450 4.7.1 Rate limit exceeded"), (node, reply)
        finally:
            s.close()


def test_killed_node_other_serves_and_its_queue_is_relayed_on_restart(site):
    frank = site.env1.issue("frank", "frank@example.com")
    gina = site.env1.issue("gina", "gina@example.com")
    daemon2 = site.daemons[NODES[1]]
    # The upstream is down: what node2 acknowledges stays in its spool.
    site.upstream.stop()
    queued = []
    for _ in range(2):
        msg = make_message(mail_from=frank.email, rcpts=[unique_rcpt("spooled")])
        qid, node = site.send(frank, msg, port=site.env2.port, header=v2_header(CLIENT))
        assert node == NODES[1]
        queued.append(msg)
    assert list((site.env2.dir / "spool" / "queue").iterdir()), "node2 spooled nothing"
    daemon2.kill9()
    site.upstream.start()
    # A connection the kernel had already accepted for the dying node is lost with it
    # (a client retries it); within the health check's interval (500 ms) the balancer
    # takes the node out, and from then on every session is served by the node left.
    def survivor_serves():
        try:
            return site.mail_reply(gina)[1] == NODES[0]
        except (smtplib.SMTPServerDisconnected, ConnectionError):
            return False
    assert poll(lambda: not port_accepts(site.env2.port), 5, 0.1), "node2 still listens"
    assert poll(survivor_serves, 5, 0.2), "the balancer did not move to the node left"
    for _ in range(3):
        msg = make_message(mail_from=gina.email, rcpts=[unique_rcpt("survivor")])
        _, node = site.send(gina, msg)
        assert node == NODES[0]
        site.upstream.wait_for(msg.marker, msg.rcpts)
    for msg in queued:
        assert not site.upstream.matching(msg.marker), "relayed by a node that was killed"
    # The restarted node relays what it had acknowledged before it was killed.
    daemon2.start()
    for msg in queued:
        site.upstream.wait_for(msg.marker, msg.rcpts, timeout=20)
    # And the balancer sends it clients again once its health check passes.
    def both_serve():
        replies = [site.mail_reply(gina) for _ in range(2)]
        assert all(r.startswith("250") for r, _ in replies), replies
        return {node for _, node in replies} == set(NODES)
    assert poll(both_serve, 10, 0.5)
