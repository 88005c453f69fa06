#!/usr/bin/env python3
"""Unit tests of bench/run.py's parsing and arithmetic: the output formats of wrk,
h2load, openssl speed, criterion and the allocs bench, the ratios the report prints,
the CPU accounting (per request and busy shares), the profile's leaf classification, the generated bodies, and the report's summary
placement. They start nothing: the load itself is what run.py is for.

Run: python3 -m unittest discover -s bench -p 'test_*.py'   (also in .ci/run)
"""

import json
import os
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

WRK = """Running 5s test @ http://127.0.0.1:9100/hooks/expel
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   549.33us  136.93us   5.63ms   91.17%
    Req/Sec    58.09k     2.47k   61.49k    76.67%
  Latency Distribution
     50%  526.00us
     75%  586.00us
     90%  650.00us
     99%    1.28ms
  290123 requests in 5.00s, 34.03MB read
  Socket errors: connect 0, read 2, write 1, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  58024.60
Transfer/sec:      6.81MB
"""

H2LOAD = """starting benchmark...
spawning thread #0: 32 total client(s). Timing-based test with 1s warm-up time and 5s main duration for each client
Application protocol: h2c
Main benchmark duration is over for thread #0. Stopping all clients.

finished in 6.00s, 39576.40 req/s, 4.53MB/s
requests: 197882 total, 197914 started, 197882 done, 197880 succeeded, 2 failed, 0 errored, 0 timeout
status codes: 197870 2xx, 1 3xx, 4 4xx, 5 5xx
traffic: 22.67MB (23770306) total, 1.04MB (1087951) headers (space savings 95.18%), 2.26MB (2374584) data
                     min         max         mean         sd        +/- sd
time for request:      217us      5.59ms       691us       270us    87.77%
time for connect:      102us       1.2ms       410us       201us    60.00%
"""

OPENSSL_3 = """Doing sha256 ops for 2s on 1048576 size blocks: 2857 sha256 ops in 2.00s
version: 3.0.17
The 'numbers' are in 1000s of bytes per second processed.
type        1048576 bytes
sha256          1497890.82k
"""

OPENSSL_SHA2_NAME = """type        1048576 bytes
SHA2-512         529530.88k
"""

CRITERION = """Benchmarking throughput/hmac_sha1_1mib: Warming up for 1.0000 s
throughput/hmac_sha1_1mib
                        time:   [715.20 µs 715.67 µs 716.21 µs]
                        thrpt:  [1.3954 GiB/s 1.3972 GiB/s 1.3988 GiB/s]
throughput/hmac_sha256_1mib
                        time:   [705.10 µs 707.14 µs 709.90 µs]
                        thrpt:  [1.4083 GiB/s 1.4141 GiB/s 1.4183 GiB/s]
                 change:
                        time:   [-1.0% +0.2% +1.1%] (p = 0.70 > 0.05)
throughput/hmac_sha512_1mib
                        time:   [2.47 ms 2.48 ms 2.49 ms]
                        thrpt:  [403.00 MiB/s 404.17 MiB/s 405.00 MiB/s]
"""

ALLOCS = """allocations per request (20000 requests after 2000 of warm-up, one keep-alive connection)
request                               allocations  bytes allocated
signed, verified, forwarded (200)            7.00             5171
forged signature (406)                       6.00             5168
verify: none, forwarded (200)                7.00             5170

heap held per idle keep-alive connection (200 connections, one request each): 1405 bytes
   1.00 × 32 B
   1.00 × 48 B
   1.00 × 608 B
"""


class Parsers(unittest.TestCase):
    def test_wrk(self):
        r = run.parse_wrk(WRK)
        self.assertEqual(r["rps"], 58024.60)
        self.assertAlmostEqual(r["p50"], 0.526)
        self.assertAlmostEqual(r["p99"], 1.28)
        self.assertEqual(r["requests"], 290123)
        self.assertEqual(r["non2xx"], 7)
        self.assertEqual(r["socket"], 6)

    def test_wrk_without_errors_counts_none(self):
        out = "\n".join(
            line for line in WRK.splitlines() if "Socket" not in line and "Non-2xx" not in line
        )
        r = run.parse_wrk(out)
        self.assertEqual((r["non2xx"], r["socket"]), (0, 0))

    def test_wrk_output_without_percentiles_is_an_error(self):
        out = WRK.replace("99%", "98%")
        with self.assertRaises(run.BenchError):
            run.parse_wrk(out)

    def test_wrk_latency_units(self):
        self.assertAlmostEqual(run.to_ms("750.00us"), 0.75)
        self.assertAlmostEqual(run.to_ms("1.50s"), 1500.0)
        self.assertAlmostEqual(run.to_ms("2.00m"), 120_000.0)
        with self.assertRaises(run.BenchError):
            run.to_ms("3ns")

    def test_h2load(self):
        r = run.parse_h2load(H2LOAD)
        self.assertEqual(r["rps"], 39576.40)
        self.assertEqual(r["requests"], 197882)
        self.assertEqual(r["failed"], 2)
        self.assertEqual(r["non2xx"], 10)  # 3xx + 4xx + 5xx
        self.assertAlmostEqual(r["mean"], 0.691)
        self.assertAlmostEqual(r["sd"], 0.270)
        self.assertEqual(r["protocol"], "h2c")

    def test_openssl_speed(self):
        gbs, printed = run.parse_openssl_speed(OPENSSL_3, "sha256")
        self.assertAlmostEqual(gbs, 1.49789082)
        self.assertEqual(printed, "1497890.82k")
        gbs, _ = run.parse_openssl_speed(OPENSSL_SHA2_NAME, "sha512")
        self.assertAlmostEqual(gbs, 0.52953088)
        with self.assertRaises(run.BenchError):
            run.parse_openssl_speed(OPENSSL_3, "sha1")

    def test_criterion_throughput_takes_each_bench_median(self):
        gbs, printed = run.parse_criterion_thrpt(CRITERION, "throughput/hmac_sha256_1mib")
        self.assertAlmostEqual(gbs, 1.4141 * 2**30 / 1e9)
        self.assertEqual(printed, "1.4141 GiB/s")
        gbs, _ = run.parse_criterion_thrpt(CRITERION, "throughput/hmac_sha512_1mib")
        self.assertAlmostEqual(gbs, 404.17 * 2**20 / 1e9)
        gbs, _ = run.parse_criterion_thrpt(CRITERION, "throughput/hmac_sha1_1mib")
        self.assertAlmostEqual(gbs, 1.3972 * 2**30 / 1e9)
        with self.assertRaises(run.BenchError):
            run.parse_criterion_thrpt(CRITERION, "throughput/hmac_md5_1mib")

    def test_allocs(self):
        rows = run.parse_allocs(ALLOCS)
        self.assertEqual(
            rows,
            [
                ("signed, verified, forwarded (200)", "7.00", "5171"),
                ("forged signature (406)", "6.00", "5168"),
                ("verify: none, forwarded (200)", "7.00", "5170"),
            ],
        )
        with self.assertRaises(run.BenchError):
            run.parse_allocs(ALLOCS.splitlines()[0])

    def test_idle_heap(self):
        self.assertEqual(
            run.parse_idle_heap(ALLOCS),
            (1405, [(1.0, 32), (1.0, 48), (1.0, 608)]),
        )
        with self.assertRaises(run.BenchError):
            run.parse_idle_heap(ALLOCS.split("\n\n")[0])

    def test_criterion_median_reads_estimates(self):
        import tempfile

        with tempfile.TemporaryDirectory() as target:
            d = os.path.join(target, "criterion", "verify", "expel_1682b", "new")
            os.makedirs(d)
            with open(os.path.join(d, "estimates.json"), "w") as f:
                json.dump({"median": {"point_estimate": 1156.9}, "mean": {"point_estimate": 2.0}}, f)
            old = os.environ.get("CARGO_TARGET_DIR")
            os.environ["CARGO_TARGET_DIR"] = target
            try:
                self.assertEqual(run.criterion_median_ns("verify/expel_1682b"), 1156.9)
                with self.assertRaises(run.BenchError):
                    run.criterion_median_ns("verify/missing")
            finally:
                if old is None:
                    del os.environ["CARGO_TARGET_DIR"]
                else:
                    os.environ["CARGO_TARGET_DIR"] = old


class Ratios(unittest.TestCase):
    def target(self, medians, rounds):
        return {"rps": medians, "rounds": [{"rps": x} for x in rounds]}

    def test_paired_ratio_gives_median_ratio_and_round_range(self):
        a = self.target(110.0, [100.0, 110.0, 130.0])
        b = self.target(100.0, [100.0, 100.0, 100.0])
        self.assertEqual(run.paired_ratio(a, b, "rps"), "1.10× (1.00–1.30)")

    def test_paired_ratio_pairs_rounds_not_sorted_values(self):
        # Round by round the ratios are 2.0 and 0.5; sorted values would say 1.0 twice.
        a = self.target(150.0, [200.0, 100.0])
        b = self.target(150.0, [100.0, 200.0])
        self.assertEqual(run.paired_ratio(a, b, "rps"), "1.00× (0.50–2.00)")

    def test_paired_ratio_one_round_has_no_range(self):
        a = self.target(120.0, [120.0])
        b = self.target(100.0, [100.0])
        self.assertEqual(run.paired_ratio(a, b, "rps"), "1.20×")

    def test_rounds_rows_list_every_round_of_every_target(self):
        def target(*rounds):
            return {"rps": 0, "rounds": list(rounds)}

        ka = {"rps": 1000.0, "p99": 1.5, "cpu_us": 16.0}
        results = {
            "keepalive": {
                "hookgate": target(ka, dict(ka, rps=1100.0)),
                "haproxy": target(dict(ka, rps=990.0), dict(ka, rps=1010.0)),
            },
            "h2c": {"hookgate": target({"rps": 900.0, "mean": 0.62, "cpu_us": None})},
            "forged": {
                "rejects": target({"rps": 2000.0, "p99": 0.3, "cpu_us": 7.0}),
                "accepted": target(ka),
            },
            "queued": {"hookgate": target(ka)},  # not a side-by-side scenario
        }
        width, rows = run.rounds_rows(results)
        self.assertEqual(width, 2)
        self.assertEqual(
            rows,
            [
                ["keepalive", "hookgate", "1,000 req/s, p99 1.500 ms, 16.00 µs",
                 "1,100 req/s, p99 1.500 ms, 16.00 µs"],
                ["keepalive", "haproxy", "990 req/s, p99 1.500 ms, 16.00 µs",
                 "1,010 req/s, p99 1.500 ms, 16.00 µs"],
                ["h2c", "hookgate", "900 req/s, mean 0.620 ms", "-"],
                ["forged", "hookgate (forged)", "2,000 req/s, p99 0.300 ms, 7.00 µs", "-"],
                ["forged", "hookgate (accepted)", "1,000 req/s, p99 1.500 ms, 16.00 µs", "-"],
            ],
        )
        self.assertEqual(run.rounds_rows({}), (0, []))

    def test_a_verdict_at_the_bound_says_which_side_it_fell(self):
        # 0.998 prints as 1.00×: the FAIL beside it needs the third decimal.
        self.assertEqual(run.at_the_bound(0.998, 1.0), " (0.998× to three decimals)")
        self.assertEqual(run.at_the_bound(1.004, 1.0), " (1.004× to three decimals)")
        self.assertEqual(run.at_the_bound(1.146, 1.15), " (1.146× to three decimals)")
        self.assertEqual(run.at_the_bound(1.96, 2.0), "")
        self.assertEqual(run.at_the_bound(1.02, 1.0), "")
        self.assertEqual(run.at_the_bound(None, 1.0), "")

    def test_paired_ratio_without_a_figure(self):
        a = self.target(120.0, [120.0, 120.0])
        self.assertEqual(run.paired_ratio(a, {"rps": 0, "rounds": []}, "rps"), "-")
        self.assertEqual(run.paired_ratio(a, {}, "rps"), "-")


    def test_paired_ratio_skips_rounds_without_the_figure(self):
        # An h2load round has no CPU per request: the range is over the rounds that do.
        a = {"cpu_us": 10.0, "rounds": [{"cpu_us": 10.0}, {"cpu_us": None}, {"cpu_us": 12.0}]}
        b = {"cpu_us": 8.0, "rounds": [{"cpu_us": 8.0}, {"cpu_us": 8.0}, {"cpu_us": 10.0}]}
        # Two rounds left: the geometric mean of 1.25 and 1.20.
        self.assertEqual(run.paired_ratio(a, b, "cpu_us"), "1.22× (1.20–1.25)")

    def test_paired_is_the_median_of_round_ratios_not_a_ratio_of_medians(self):
        # keepalive req/s of the run at f0779e0: one slow round for hookgate and one
        # fast one for haproxy. The medians' ratio says 1.12×; round by round the
        # middle ratio is 1.01×.
        hg = self.target(64_484.0, [67_038.0, 57_183.0, 44_055.0, 64_484.0, 64_766.0])
        hap = self.target(57_801.0, [57_801.0, 56_351.0, 53_690.0, 59_470.0, 72_458.0])
        self.assertAlmostEqual(run.ratio(hg["rps"], hap["rps"]), 1.1156, places=3)
        self.assertAlmostEqual(run.paired(hg, hap, "rps"), 57_183.0 / 56_351.0)
        self.assertEqual(run.paired_ratio(hg, hap, "rps"), "1.01× (0.82–1.16)")

    def test_paired_falls_back_to_the_medians_without_rounds(self):
        self.assertAlmostEqual(run.paired({"rps": 3.0}, {"rps": 2.0}, "rps"), 1.5)
        self.assertIsNone(run.paired({"rps": 3.0}, {}, "rps"))


class Cpu(unittest.TestCase):
    def test_usage_figures(self):
        usage = {"wall": 5.0, "proxy": 4.9, "load": 2.5, "sink": 2.0}
        f = run.usage_figures(usage, 245_000)
        self.assertAlmostEqual(f["cpu_us"], 20.0)
        self.assertAlmostEqual(f["busy"], 0.98)
        self.assertAlmostEqual(f["gen"], 0.5)
        self.assertAlmostEqual(f["sink_busy"], 0.4)
        self.assertEqual(run.busy_shares(f), "98% / 50% / 40%")

    def test_preemptions_per_second(self):
        usage = {"wall": 5.0, "proxy": 4.9, "load": 2.5, "sink": 2.0, "preempted": 150}
        f = run.usage_figures(usage, 245_000)
        self.assertAlmostEqual(f["preempt_s"], 30.0)
        self.assertIsNone(run.usage_figures(dict(usage, preempted=None), 1)["preempt_s"])
        self.assertEqual(
            run.preemptions({"preempt_s": 12.4}, {"preempt_s": 1030.0}),
            "; preempted 12/s vs 1,030/s",
        )
        self.assertEqual(run.preemptions({"preempt_s": None}, {"preempt_s": 3.0}), "")

    def test_two_busy_loops_on_one_core_preempt_each_other(self):
        # A process group of two busy loops pinned to one core: the scheduler must
        # take the core from one to run the other, every few milliseconds.
        loops = subprocess.Popen(
            ["taskset", "-c", "0", "sh", "-c", "f() { while :; do :; done; }; f & f & wait"],
            start_new_session=True,
        )
        try:
            time.sleep(0.5)
            self.assertGreater(run.group_preemptions(loops.pid), 0)
        finally:
            os.killpg(loops.pid, signal.SIGKILL)
            loops.wait()

    def test_usage_figures_without_a_proxy_sink_or_count(self):
        usage = {"wall": 5.0, "proxy": None, "load": 5.0, "sink": None}
        f = run.usage_figures(usage, 1000)
        self.assertIsNone(f["cpu_us"])
        self.assertIsNone(f["busy"])
        self.assertEqual(run.busy_shares(f), "- / 100% / -")
        # h2load: no request count that matches the CPU window.
        usage = {"wall": 6.0, "proxy": 5.7, "load": 3.0, "sink": 1.2}
        self.assertIsNone(run.usage_figures(usage, None)["cpu_us"])

    def test_tcp_segments_per_request(self):
        snmp = (
            "Ip: Forwarding DefaultTTL\nIp: 1 64\n"
            "Tcp: RtoAlgorithm InSegs OutSegs RetransSegs\n"
            "Tcp: 1 721191943 721171629 23104\n"
            "Udp: InDatagrams\nUdp: 5\n"
        )
        self.assertEqual(
            run.proc_net_counters(snmp, "Tcp:"),
            {"RtoAlgorithm": 1, "InSegs": 721191943, "OutSegs": 721171629, "RetransSegs": 23104},
        )
        self.assertEqual(run.proc_net_counters(snmp, "TcpExt:"), {})
        usage = {"wall": 5.0, "proxy": 4.0, "load": 2.0, "sink": 2.0,
                 "tcp": {"segs": 800_400, "pure_acks": 200}}
        f = run.usage_figures(usage, 200_000)
        self.assertAlmostEqual(f["segs"], 4.002)
        self.assertAlmostEqual(f["pure_acks"], 0.001)
        self.assertEqual(run.segments(f), "4.00 (0.00)")
        usage["tcp"] = None
        self.assertEqual(run.segments(run.usage_figures(usage, 200_000)), "-")

    def test_tcp_counters_read_this_machine(self):
        # The bench runs on Linux only; there /proc/net has both counters.
        c = run.tcp_counters()
        self.assertIsNotNone(c)
        self.assertGreaterEqual(c["segs"], 0)
        self.assertGreaterEqual(c["pure_acks"], 0)

    def test_median_of_skips_missing_figures(self):
        rs = [{"x": 3.0}, {"x": None}, {}, {"x": 1.0}, {"x": 2.0}]
        self.assertEqual(run.median_of(rs, "x"), 2.0)
        self.assertIsNone(run.median_of([{"x": None}], "x"))

    def test_group_cpu_seconds_reads_this_process(self):
        # This process leads no group of its own under unittest; its own pgid's members
        # include it, and a busy loop must show up as CPU time.
        pgid = os.getpgid(0)
        before = run.group_cpu_seconds(pgid)
        deadline = run.time.process_time() + 0.3
        while run.time.process_time() < deadline:
            pass
        self.assertGreaterEqual(run.group_cpu_seconds(pgid) - before, 0.25)

    def test_forged_detail(self):
        def side(rps, cpu, gen, rounds):
            return {"rps": rps, "cpu_us": cpu, "gen": gen,
                    "rounds": [{"rps": r, "cpu_us": c} for r, c in rounds]}
        f = {
            "rejects": side(110_000.0, 8.0, 0.97, [(100_000.0, 8.0), (120_000.0, 8.0)]),
            "accepted": side(55_000.0, 20.0, 0.45, [(55_000.0, 20.0), (55_000.0, 18.0)]),
        }
        self.assertEqual(
            run.forged_detail(f),
            "110,000 rejects/s, 1.99× (1.82–2.18) the 55,000 accepted req/s of the same "
            "rounds; per request hookgate spends 8.00 µs of CPU on a reject and 20.00 µs "
            "on an accepted delivery (2.37× (2.25–2.50)); wrk was 97% busy on its core "
            "during the forged runs",
        )


class Profile(unittest.TestCase):
    def test_leaf_kinds(self):
        self.assertEqual(run.leaf_kind("tcp_ack_[k]"), "kernel")
        self.assertEqual(run.leaf_kind("sha2::sha256::x86::digest_blocks"), "sha256")
        self.assertEqual(run.leaf_kind("_mi_page_malloc_zero"), "alloc")
        self.assertEqual(run.leaf_kind("_int_free"), "alloc")
        self.assertEqual(run.leaf_kind("__memcpy_avx512_unaligned_erms"), "libc")
        self.assertEqual(run.leaf_kind("__GI___libc_write"), "libc")
        self.assertEqual(run.leaf_kind("hookgate::server::Gateway::handle"), "own")

    def test_leaf_shares(self):
        folded = "\n".join(
            [
                "hookgate;main;tcp_ack_[k] 60",
                "hookgate;main;sha2::sha256::x86::digest_blocks 20",
                "hookgate;main;hookgate::h1::codec::parse_head 15",
                "hookgate;main;mi_free 5",
                "not a folded line",
            ]
        )
        s = run.leaf_shares(folded)
        self.assertAlmostEqual(s["kernel"], 0.60)
        self.assertAlmostEqual(s["sha256"], 0.20)
        self.assertAlmostEqual(s["own"], 0.15)
        self.assertAlmostEqual(s["alloc"], 0.05)
        self.assertEqual(s["top"][0][1], 0.60)
        with self.assertRaises(run.BenchError):
            run.leaf_shares("")


class Bodies(unittest.TestCase):
    def test_generated_bodies_are_json_of_the_exact_size(self):
        for size in (1024, 65536, 1 << 20):
            body = run.generated_body(size)
            self.assertEqual(len(body), size)
            self.assertIn("alerts", json.loads(body)["data"])

    def test_signature_is_the_expel_hmac(self):
        import hashlib
        import hmac

        sig = run.signature(b"{}")
        self.assertEqual(sig, "sha256=" + hmac.new(run.SECRET, b"{}", hashlib.sha256).hexdigest())


class ReportOrder(unittest.TestCase):
    def test_move_puts_the_summary_before_the_results(self):
        import contextlib
        import io

        report = run.Report()
        with contextlib.redirect_stdout(io.StringIO()):
            report.line("# header")
            at = len(report.lines)
            report.line("## results")
            report.line("scenario table")
            start = len(report.lines)
            report.line("## summary")
            report.line("summary table")
            report.move(start, len(report.lines), at)
            report.line("### targets")
        self.assertEqual(
            report.lines,
            ["# header", "## summary", "summary table", "## results", "scenario table", "### targets"],
        )


if __name__ == "__main__":
    unittest.main()
