"""A real ``metaloop run`` for the tests: keys made with ``metaloop keys generate``, a config
file, API tokens, start / SIGTERM / restart on the same data.

The binary is ``$METALOOP_BIN``, else the repository's ``target/release/metaloop`` (built
with ``cargo build --release``). NATS is ``$METALOOP_TEST_NATS`` (default
nats://127.0.0.1:4222). With ``CI=true`` a missing binary or NATS server fails the tests;
otherwise they are skipped and say why.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from metaloop_adapter import EventSigner, PublicKey, SigningKey
from metaloop_adapter.client import ApiClient

REPO = Path(__file__).resolve().parents[3]
CI = os.environ.get("CI") == "true"


def _missing(what: str) -> None:
    if CI:
        pytest.fail(f"CI=true but {what}")
    pytest.skip(what)


@pytest.fixture(scope="session")
def metaloop_bin() -> Path:
    env = os.environ.get("METALOOP_BIN")
    path = Path(env) if env else REPO / "target" / "release" / "metaloop"
    if not path.is_file():
        _missing(f"no metaloop binary at {path} (cargo build --release, or set METALOOP_BIN)")
    return path


@pytest.fixture(scope="session")
def nats_url() -> str:
    url = os.environ.get("METALOOP_TEST_NATS", "nats://127.0.0.1:4222")
    host, _, port = url.removeprefix("nats://").partition(":")
    try:
        socket.create_connection((host, int(port or 4222)), timeout=2).close()
    except OSError as e:
        _missing(f"NATS at {url} is unreachable ({e}); set METALOOP_TEST_NATS")
    return url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DEFAULT_GOALS = """
[[goals]]
kpi = "overall_success_rate"
target = 0.95
direction = "higher_is_better"
[[goals]]
kpi = "mean_recovery_time_seconds"
target = 30.0
direction = "lower_is_better"
[[goals]]
kpi = "autonomy_rate"
target = 0.80
direction = "higher_is_better"
[[goals]]
kpi = "compliance_score"
target = 95.0
direction = "higher_is_better"
[[goals]]
kpi = "human_intervention_rate"
target = 0.15
direction = "lower_is_better"
"""


class Daemon:
    """One ``metaloop run`` deployment in a temporary directory."""

    SOURCE = "urn:spine:application"
    ROLES = {
        "adapter": ["adapter"],
        "viewer": ["viewer"],
        "ops_engineer": ["approver", "viewer"],
        "admin": ["admin", "operator", "viewer"],
    }

    def __init__(self, binary: Path, root: Path, *, mesh: str = "memory://", prefix: str = "metaloop",
                 stream: str | None = None, cycle: str = "1s", extra: str = ""):
        self.binary = binary
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.data = root / "data"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.prefix = prefix
        self.tokens = {p: secrets.token_hex(16) for p in self.ROLES}
        out = self.run_cli("keys", "generate", "--out", str(root / "app-adapter"), "--source", self.SOURCE)
        assert out.returncode == 0, out.stderr
        self.adapter_key = SigningKey.from_file(root / "app-adapter.key")
        self.signer = EventSigner(self.SOURCE, self.adapter_key)
        public = PublicKey.from_file(root / "app-adapter.pub")
        assert public == self.adapter_key.public_key
        tokens = "".join(
            f'[[tokens]]\nprincipal = "{p}"\nroles = {roles!r}\nsha256 = "{hashlib.sha256(self.tokens[p].encode()).hexdigest()}"\n'.replace("'", '"')
            for p, roles in self.ROLES.items()
        )
        self.config = root / "metaloop.toml"
        self.config.write_text(
            f'environment = "production"\ncycle_interval = "{cycle}"\nlisten = "127.0.0.1:{self.port}"\n'
            f'data_dir = "{self.data}"\n{extra}\n'
            f'[mesh]\nurl = "{mesh}"\nsubject_prefix = "{prefix}"\n'
            + (f'stream = "{stream}"\n' if stream else "")
            + f'[[adapters]]\nsource = "{self.SOURCE}"\npublic_keys = ["{public.hex}"]\n{tokens}'
        )
        check = self.run_cli("config", "check", str(self.config))
        assert check.returncode == 0, check.stdout + check.stderr
        self.proc: subprocess.Popen | None = None
        self.log = root / "metaloop.log"

    def run_cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.binary), *args], capture_output=True, text=True, timeout=60)

    def api(self, principal: str) -> ApiClient:
        return ApiClient(self.base, self.tokens[principal])

    def supervisor_key(self) -> PublicKey:
        """metaloop's public key, written beside its secret key on first start."""
        return PublicKey.from_file(self.data / "supervisor.pub")

    def start(self, timeout: float = 30) -> "Daemon":
        assert self.proc is None
        log = open(self.log, "ab")
        self.proc = subprocess.Popen([str(self.binary), "run", "--config", str(self.config)],
                                     stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"metaloop run exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"metaloop did not come up:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait: a graceful stop with a final checkpoint."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def wait_for_cycle(self, after: int, timeout: float = 30) -> int:
        viewer = self.api("viewer")
        deadline = time.monotonic() + timeout
        while True:
            cycle = viewer.status()["cycle"]
            if cycle > after:
                return cycle
            assert time.monotonic() < deadline, f"no cycle closed after {after}"
            time.sleep(0.1)

    def folded(self) -> dict:
        """What the ledger's closed cycles hold, summed over every ``snapshot.built`` record:
        events per domain and recoveries (successes / trials)."""
        totals = {"events": 0, "recoveries": 0, "successes": 0}
        for r in self.api("viewer").iter_ledger():
            if r["action"] != "snapshot.built":
                continue
            for w in r["payload"]["windows"]["domains"].values():
                totals["events"] += w["events"]
                totals["recoveries"] += w["success"]["trials"]
                totals["successes"] += w["success"]["successes"]
        return totals


@pytest.fixture
def daemon_factory(metaloop_bin, tmp_path):
    made: list[Daemon] = []

    def make(**kw) -> Daemon:
        d = Daemon(metaloop_bin, tmp_path / f"d{len(made)}", **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.kill()


@pytest.fixture
def nats_deployment(metaloop_bin, nats_url, tmp_path):
    """(url, subject prefix, stream) for one test's daemon on NATS: a prefix and stream of
    its own where the configuration can name the stream (``[mesh] stream``); otherwise the
    default prefix and stream ``METALOOP``, emptied first."""
    import asyncio

    import nats

    probe = tmp_path / "probe.toml"
    probe.write_text('[mesh]\nurl = "nats://127.0.0.1:4222"\nstream = "PROBE"\n')
    named = subprocess.run([str(metaloop_bin), "config", "check", str(probe)], capture_output=True).returncode == 0
    tag = uuid.uuid4().hex[:10]
    prefix, stream = ("mlpy" + tag, "MLPY_" + tag.upper()) if named else ("metaloop", "METALOOP")

    async def delete():
        nc = await nats.connect(nats_url)
        try:
            await nc.jetstream().delete_stream(stream)
        except Exception:
            pass
        await nc.close()

    if not named:
        asyncio.run(delete())
    yield nats_url, prefix, (stream if named else None)
    asyncio.run(delete())
