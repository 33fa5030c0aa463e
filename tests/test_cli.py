"""The installed `dbp-ae` console script."""
import shutil
import subprocess
import sys


def run(*args, **kw):
    exe = shutil.which("dbp-ae")
    cmd = [exe, *args] if exe else [sys.executable, "-c", "import sys; from dbp_ae.cli import main; sys.exit(main())", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)


def test_data_summary(data_dir):
    r = run("data", "--data-dir", str(data_dir))
    assert r.returncode == 0, r.stderr
    assert "mnist        train  60000 images of 1x28x28" in r.stdout
    assert "celeba       valid   1000 images of 3x64x64" in r.stdout


def test_unknown_command():
    r = run("nonsense")
    assert r.returncode == 2 and "invalid choice" in r.stderr
