"""Black-box harness: start one Switchboard node (release binary) on ephemeral loopback
ports with its own data dir, give gRPC stubs, stop it by PID.

    import sys; sys.path.insert(0, 'tests/blackbox'); from node import Node
    with Node() as n:
        n.admin.CreateTenant(...)
"""
import os, subprocess, sys, tempfile, signal, time
HERE = os.path.dirname(os.path.abspath(__file__))
# Stubs from proto/, made by scripts/blackbox (python -m grpc_tools.protoc).
sys.path.insert(0, os.environ.get('BLACKBOX_GEN', os.path.join(HERE, '..', '..', 'target', 'blackbox', 'gen')))
import grpc
from switchboard.v1 import (admin_pb2, admin_pb2_grpc, agent_pb2, agent_pb2_grpc,
    channel_pb2, channel_pb2_grpc, supervisor_pb2, supervisor_pb2_grpc, events_pb2,
    events_pb2_grpc, common_pb2, explain_pb2, webhooks_pb2)

# The node under test: a release build unless SB_BIN names another.
BIN = os.environ.get('SB_BIN', os.path.join(HERE, '..', '..', 'target', 'release', 'switchboard'))

class Node:
    def __init__(self, extra_args=(), data_dir=None, env=None):
        self.extra_args = list(extra_args)
        self.data_dir = data_dir or tempfile.mkdtemp(prefix='sbbb-')
        self.env = env

    def start(self):
        e = dict(os.environ); e.update(self.env or {})
        self.proc = subprocess.Popen([BIN, 'serve', '--grpc-addr', '127.0.0.1:0',
            '--metrics-addr', '127.0.0.1:0', '--data-dir', self.data_dir, '--log', 'warn']
            + self.extra_args, stdout=subprocess.PIPE, stderr=open(self.data_dir + '.log', 'ab'),
            env=e, text=True)
        line = self.proc.stdout.readline()
        parts = dict(p.split('=', 1) for p in line.split()[1:])
        self.addr = parts['grpc']; self.metrics = parts['metrics']
        self.channel = grpc.insecure_channel(self.addr)
        grpc.channel_ready_future(self.channel).result(timeout=60)
        self.admin = admin_pb2_grpc.AdminServiceStub(self.channel)
        self.agent = agent_pb2_grpc.AgentServiceStub(self.channel)
        self.chan = channel_pb2_grpc.ChannelServiceStub(self.channel)
        self.sup = supervisor_pb2_grpc.SupervisorServiceStub(self.channel)
        self.events = events_pb2_grpc.EventServiceStub(self.channel)
        return self

    def stop(self, kill=False):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.proc.wait(timeout=60)
        self.channel.close()

    def restart(self, kill=False):
        self.stop(kill=kill); return self.start()

    def __enter__(self): return self.start()
    def __exit__(self, *a): self.stop()
