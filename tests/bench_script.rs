//! Runs the load benchmark's own unit tests (`bench/test_run.py`: how `bench/run.py`
//! reads wrk, h2load, openssl speed, criterion and the allocs bench, and the ratios it
//! reports) as part of `cargo test`, so that the README's one test command covers them.
//! They need only `python3` (standard library) and start no server.

use std::process::Command;

#[test]
fn bench_script_unit_tests_pass() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .args([
            "-m",
            "unittest",
            "discover",
            "-s",
            "bench",
            "-p",
            "test_*.py",
        ])
        // No __pycache__ in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(root)
        .output()
        .expect("python3 runs (the benchmark script needs it; install CPython 3)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench/test_run.py failed ({}):\n{}{stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    // unittest reports on stderr: "Ran N tests" then "OK". A discovery that finds no
    // test file also exits 0 on some versions; make sure the tests ran.
    let ran = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("Ran ")?
                .split(' ')
                .next()?
                .parse::<u32>()
                .ok()
        })
        .unwrap_or(0);
    assert!(
        ran >= 10,
        "expected the bench script's tests to run, got:\n{stderr}"
    );
}
