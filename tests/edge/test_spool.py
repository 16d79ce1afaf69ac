"""The store-and-forward spool on its own: order, survival across processes (and SIGKILL), the size bound, the lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from fleet_support import env

from edge.errors import ConfigError
from edge.spool import Spool


def test_messages_come_back_in_order_and_an_ack_deletes_exactly_one(tmp_path):
    with Spool(tmp_path / "s", max_bytes=10_000) as spool:
        seqs = [spool.put("a/b/events", json.dumps({"n": n}).encode()) for n in range(5)]
        assert seqs == [1, 2, 3, 4, 5]
        assert [json.loads(e.payload)["n"] for e in spool.pending()] == [0, 1, 2, 3, 4]
        assert {e.topic for e in spool.pending()} == {"a/b/events"}
        assert [e.seq for e in spool.pending(after=3)] == [4, 5] and [e.seq for e in spool.pending(limit=2)] == [1, 2]
        spool.ack(2)
        spool.ack(2)  # twice, or an unknown number: nothing else goes
        spool.ack(99)
        assert [e.seq for e in spool.pending()] == [1, 3, 4, 5] and spool.depth == 4
        assert sorted(p.name for p in (tmp_path / "s").glob("*.msg")) == [f"{n:016d}.msg" for n in (1, 3, 4, 5)]


def test_a_new_process_finds_what_the_last_one_left_and_numbers_on_after_it(tmp_path):
    with Spool(tmp_path / "s") as spool:
        for n in range(3):
            spool.put("t", b"%d" % n)
        spool.ack(1)
    with Spool(tmp_path / "s") as again:
        assert again.found == 2 and [e.payload for e in again.pending()] == [b"1", b"2"]
        assert again.put("t", b"3") == 4


def test_the_bound_drops_the_oldest_first_counts_them_and_spares_messages_in_flight(tmp_path):
    with Spool(tmp_path / "s", max_bytes=1024) as spool:
        for n in range(10):  # 100-byte messages (with the topic line): 10 fit exactly
            spool.put("t", b"x" * 98)
        assert spool.depth == 10 and spool.bytes == 1000 and spool.dropped == 0
        spool.put("t", b"y" * 98, keep={1, 2})  # 1 and 2 are awaiting their PUBACK: 3 goes instead
        assert [e.seq for e in spool.pending()][:3] == [1, 2, 4] and spool.dropped == 1 and spool.bytes <= 1024
        with pytest.raises(ConfigError, match="cannot fit a spool of max_bytes 1024"):
            spool.put("t", b"z" * 2000)
        with pytest.raises(ConfigError, match="newline"):
            spool.put("a\nb", b"")


def test_one_process_at_a_time(tmp_path):
    first = Spool(tmp_path / "s")
    with pytest.raises(ConfigError, match="in use by another edgecam process"):
        Spool(tmp_path / "s")
    first.close()
    first.close()
    Spool(tmp_path / "s").close()


@pytest.mark.parametrize("max_bytes", [0, 100, True, 1.5e6])
def test_bad_bounds_are_refused(tmp_path, max_bytes):
    with pytest.raises(ConfigError, match="max_bytes must be an int >= 1024"):
        Spool(tmp_path / "s", max_bytes=max_bytes)


_WRITER = textwrap.dedent("""
    import json, sys
    from edge.spool import Spool
    spool = Spool(sys.argv[1], max_bytes=10**9)
    n = 0
    print("ready", flush=True)
    while True:
        spool.put("t", json.dumps({"n": n, "pad": "p" * 500}).encode())
        n += 1
""")


def test_sigkill_while_writing_leaves_only_whole_messages_and_no_gap(tmp_path):
    folder = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(folder)], stdout=subprocess.PIPE, text=True, env=env())
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.4)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    with Spool(folder) as spool:
        entries = spool.pending()
        numbers = [json.loads(e.payload)["n"] for e in entries]  # every message parses: none is half-written
        assert len(numbers) > 10 and numbers == list(range(len(numbers)))
        assert not list(folder.glob(".*.tmp")), "an interrupted write is cleared away at open"
