"""Every script the README tells a user to run is executable, in the working
tree and in git (a fresh clone must run `sudo scripts/bind_nic.sh status`
as written)."""
import os
import re
import subprocess

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def readme_scripts():
    text = open(os.path.join(TOP, "README.md")).read()
    names = set(re.findall(r"(?<![\w./-])((?:scripts|bench|fuzz|\.ci)/[\w-]+(?:\.sh|\.py)?)(?![\w./])", text))
    # a script is run by its path (sudo scripts/x.sh, bench/x.sh ...), not as `python bench/x.py`
    run = set()
    for n in names:
        for m in re.finditer(rf"(\S*)\s*{re.escape(n)}", text):
            if not m.group(1).endswith("python") and os.path.isfile(os.path.join(TOP, n)):
                run.add(n)
    return sorted(run)


def test_every_script_the_readme_names_is_executable():
    scripts = readme_scripts()
    assert {"scripts/demo.sh", "scripts/test.sh", "scripts/install.sh", "scripts/setup_hugepages.sh",
            "scripts/bind_nic.sh", "bench/fuzz_long.sh", "bench/soak.py"} <= set(scripts), scripts
    staged = subprocess.run(["git", "-C", TOP, "ls-files", "-s", "--"] + scripts, capture_output=True,
                            text=True, check=True).stdout
    modes = {line.split()[3]: line.split()[0] for line in staged.splitlines()}
    for s in scripts:
        assert os.access(os.path.join(TOP, s), os.X_OK), f"{s} is not executable here"
        assert modes.get(s) == "100755", f"{s} is not executable in git ({modes.get(s)}): " \
                                         f"git update-index --chmod=+x {s}"
        with open(os.path.join(TOP, s)) as f:
            assert f.readline().startswith("#!"), f"{s} has no #! line"


def test_readme_commands_run_as_root_without_sudo():
    """Every command in the README's shell blocks runs as written by root on
    a machine without sudo (a fresh Debian 12 has none for root)."""
    text = open(os.path.join(TOP, "README.md")).read()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    assert blocks
    for b in blocks:
        for line in b.splitlines():
            assert not re.search(r"(^|[;&|]\s*)sudo\s", line), line
