"""Offline means offline: no connection, no host name lookup, nothing written in the user's home.

Python-level network use is seen by an audit hook (``socket.connect``, ``socket.getaddrinfo``...) or by patched
``socket`` functions; native code (onnxruntime's telemetry resolves its host in C++) is seen by ``strace`` where it
can run, and everywhere by the files such code leaves in a temporary ``HOME``.
"""

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
import torch

from sk_decaf._torch.backbones import load_backbone, state_digest
from tests.conftest import TINY

#: Where timm finds TINY's pretrained weights on the Hugging Face hub.
HUB_REPO = "models--timm--test_efficientnet.r160_in1k"
COMMIT = "0123456789abcdef0123456789abcdef01234567"

#: Run in the child before anything else: record each Python-level network call and refuse it.
GUARD = """
import os, sys

def _refuse_network(event, args):
    inet = event in ("socket.connect", "socket.sendto") and isinstance(args[1], tuple)
    if inet or event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
                         "socket.gethostbyaddr", "socket.getnameinfo"):
        with open(os.environ["NETWORK_LOG"], "a") as log:
            log.write(f"{event} {args[1] if inet else args}\\n")
        raise OSError(f"{event} refused: this test runs offline")

sys.addaudithook(_refuse_network)
"""


def _strace():
    """An ``strace`` command prefix that records network system calls, or None where strace cannot trace."""
    if shutil.which("strace") is None:
        return None
    cmd = ["strace", "-f", "-qq", "--seccomp-bpf", "-e", "trace=connect,sendto,sendmsg"]
    probe = subprocess.run([*cmd, "-o", os.devnull, sys.executable, "-c", "pass"], capture_output=True)
    return cmd if probe.returncode == 0 else None


def _run_offline(code, tmp_path, env=None, timeout=300):
    """Run ``code`` in a new Python with the guard, ``HOME`` in ``tmp_path`` and onnxruntime's telemetry switch
    unset; return (completed process, Python-level network calls, native network calls, files left in HOME)."""
    home, log, trace = tmp_path / "home", tmp_path / "network.log", tmp_path / "strace.log"
    home.mkdir()
    child_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "HF_", "TORCH_HOME", "MPLCONFIGDIR", "ORT_"))
    }
    child_env.update(HOME=str(home), NETWORK_LOG=str(log), **(env or {}))
    cmd = [sys.executable, "-c", GUARD + code]
    strace = _strace()
    if strace is not None:
        cmd = [*strace, "-o", str(trace), *cmd]
    proc = subprocess.run(cmd, env=child_env, capture_output=True, text=True, timeout=timeout)
    python_calls = log.read_text().splitlines() if log.exists() else []
    native = trace.read_text().splitlines() if trace.exists() else []
    native_calls = [line for line in native if "AF_INET" in line]  # IPv4/IPv6 connects and DNS datagrams
    files = sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())
    return proc, python_calls, native_calls, files


def test_demo_opens_no_socket_and_resolves_no_host(tmp_path, demo):
    data = tmp_path / "images"
    for c in range(3):  # 3 classes x 4 images keep the run short; the network and engine are the defaults
        (data / demo.target_names[c]).mkdir(parents=True)
        for path in [p for p, t in zip(demo.paths, demo.target) if t == c][:4]:
            shutil.copy(path, data / demo.target_names[c])
    code = f"from sk_decaf.cli import main\nsys.exit(main(['demo', '--data', {str(data)!r}, '--cv', '2']))"
    proc, python_calls, native_calls, files = _run_offline(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "best layer" in proc.stdout
    assert python_calls == []
    assert native_calls == []
    assert files == []  # onnxruntime's telemetry would leave .cache/Microsoft/DeveloperTools/.onnxruntime/deviceid


def _seeded_weights():
    """TINY's state dict with seeded random values, as timm would load them from the hub."""
    import timm

    generator = torch.Generator().manual_seed(7)
    state = timm.create_model(TINY).state_dict()
    return {k: torch.rand(v.shape, generator=generator) if v.is_floating_point() else v for k, v in state.items()}


@pytest.fixture
def hub_cache(tmp_path):
    """``HF_HOME`` whose hub cache holds TINY's pretrained weights (seeded values), laid out as the hub client
    stores them; and those weights."""
    from safetensors.torch import save_file

    repo = tmp_path / "hf_home" / "hub" / HUB_REPO
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    weights = _seeded_weights()
    save_file(weights, str(repo / "snapshots" / COMMIT / "model.safetensors"))
    return tmp_path / "hf_home", weights


def _digest(weights):
    model = load_backbone(TINY, weights="random").model
    model.load_state_dict(weights)
    return state_digest(model)


@pytest.fixture
def no_network(monkeypatch):
    """Every connection or host name lookup fails, and is recorded."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("no network in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def test_hf_hub_offline_loads_timm_weights_from_the_cache(hub_cache, tmp_path):
    """The user's switch, as the issue reports it: HF_HUB_OFFLINE=1 and weights in HF_HOME's cache."""
    hf_home, weights = hub_cache
    code = (
        f"from sk_decaf._torch.backbones import load_backbone, state_digest\n"
        f"print(state_digest(load_backbone({TINY!r}).model))"
    )
    proc, python_calls, native_calls, _ = _run_offline(
        code, tmp_path, env={"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-1] == _digest(weights)
    assert python_calls == [] and native_calls == []


def test_cached_timm_weights_load_without_network_when_online_mode(hub_cache, monkeypatch, no_network):
    """Without HF_HUB_OFFLINE, weights already in the cache still load, and nothing is tried on the network."""
    from huggingface_hub import constants

    hf_home, weights = hub_cache
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert state_digest(load_backbone(TINY).model) == _digest(weights)
    assert no_network == []
    assert constants.HF_HUB_OFFLINE is False  # the offline switch used to read the cache is restored


def test_hub_offline_mode_without_cached_weights_fails_without_connecting(monkeypatch, no_network, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_hub_cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError, match="weights="):
        load_backbone(TINY)
    assert no_network == []
    assert constants.HF_HUB_OFFLINE is True


def test_no_network_without_cached_weights_fails_in_seconds(monkeypatch, no_network, tmp_path):
    """The hub client alone retries for about a minute; one refused request must be enough."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_hub_cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="weights="):
        load_backbone(TINY)
    assert time.perf_counter() - start < 10
    assert len(no_network) >= 1  # the download was tried, not skipped
    assert constants.HF_HUB_OFFLINE is False  # the offline switch used to read the cache is restored
