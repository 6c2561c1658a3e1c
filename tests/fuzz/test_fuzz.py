"""The libFuzzer harnesses (ASan + UBSan), each run for a bounded time from
its seed corpus: the classifier and the forwarding rewrite
(fuzz/fuzz_classify.c, fuzz/corpus), the DNS answers in C (fuzz/fuzz_dns.c,
fuzz/corpus-dns). bench/fuzz_long.sh runs them for longer."""
import os
import shutil
import subprocess

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECONDS = int(os.environ.get("KNI_GW_FUZZ_SECONDS", "60"))


@pytest.fixture(scope="module")
def built():
    if shutil.which("clang-14") is None:
        pytest.fail("clang-14 is not installed (scripts/install.sh installs it)")
    b = subprocess.run(["bash", os.path.join(TOP, "fuzz", "build.sh")], capture_output=True, text=True)
    assert b.returncode == 0, b.stderr[-3000:]


@pytest.mark.parametrize("harness,seeds,seconds", [("fuzz_classify", "corpus", SECONDS),
                                                   ("fuzz_dns", "corpus-dns", max(SECONDS // 2, 10))])
def test_fuzz(built, tmp_path, harness, seeds, seconds):
    corpus = tmp_path / "corpus"
    shutil.copytree(os.path.join(TOP, "fuzz", seeds), corpus)
    assert len(os.listdir(corpus)) >= 50
    r = subprocess.run([os.path.join(TOP, "build", harness), f"-max_total_time={seconds}",
                        "-rss_limit_mb=4096", "-print_final_stats=1", str(corpus)],
                       capture_output=True, text=True, timeout=seconds + 120, cwd=tmp_path)
    tail = r.stderr[-4000:]
    assert r.returncode == 0, tail
    assert "Done " in tail and "ERROR" not in tail, tail
    runs = int(next(ln.split()[-1] for ln in tail.splitlines() if "stat::number_of_executed_units" in ln))
    assert runs > 100_000, tail
