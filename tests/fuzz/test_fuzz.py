"""The libFuzzer harness over the classifier and the forwarding rewrite
(fuzz/fuzz_classify.c, ASan + UBSan), run for a bounded time from the seed
corpus in fuzz/corpus. bench/fuzz_long.sh runs it for longer."""
import os
import shutil
import subprocess

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECONDS = int(os.environ.get("KNI_GW_FUZZ_SECONDS", "60"))


def test_fuzz_classifier_and_rewrite(tmp_path):
    if shutil.which("clang-14") is None:
        pytest.fail("clang-14 is not installed (scripts/install.sh installs it)")
    b = subprocess.run(["bash", os.path.join(TOP, "fuzz", "build.sh")], capture_output=True, text=True)
    assert b.returncode == 0, b.stderr[-3000:]
    corpus = tmp_path / "corpus"
    shutil.copytree(os.path.join(TOP, "fuzz", "corpus"), corpus)
    assert len(os.listdir(corpus)) >= 50
    r = subprocess.run([os.path.join(TOP, "build", "fuzz_classify"), f"-max_total_time={SECONDS}",
                        "-rss_limit_mb=4096", "-print_final_stats=1", str(corpus)],
                       capture_output=True, text=True, timeout=SECONDS + 120, cwd=tmp_path)
    tail = r.stderr[-4000:]
    assert r.returncode == 0, tail
    assert "Done " in tail and "ERROR" not in tail, tail
    runs = int(next(ln.split()[-1] for ln in tail.splitlines() if "stat::number_of_executed_units" in ln))
    assert runs > 100_000, tail
