import json
import subprocess
import sys

from click.testing import CliRunner

from pipeline.cli import main


def test_extract_and_info_json(tiny_data, tmp_path):
    runner = CliRunner()
    args = ["extract", str(tiny_data), "--backbone", "mobilenet_025", "--image-size", "32", "--weights", "none",
            "--cache-dir", str(tmp_path / "c"), "--json"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {"cache", "splits", "computed", "reused", "removed", "skipped", "seconds", "timings",
            "images_per_second"} <= set(summary)
    info = runner.invoke(main, ["info", summary["cache"], "--json"])
    assert info.exit_code == 0
    assert json.loads(info.stdout)["splits"]["train"]["rows"] == 12


def test_bad_arguments_get_one_line_not_a_traceback(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["extract", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "not found" in r.output and "Traceback" not in r.output
    (tmp_path / "d" / "a").mkdir(parents=True)
    r = runner.invoke(main, ["extract", str(tmp_path / "d"), "--backbone", "resnet5"])
    assert r.exit_code == 2 and "Did you mean resnet50" in r.output
    r = runner.invoke(main, ["extract", str(tmp_path / "d"), "--backbone", "inception_v3", "--image-size", "50"])
    assert r.exit_code == 2 and "range of 75 to 1024" in r.output
    (tmp_path / "x.h5").write_bytes(b"junk")
    r = runner.invoke(main, ["info", str(tmp_path / "x.h5")])
    assert r.exit_code == 2 and "not an HDF5 feature file" in r.output


def test_help_does_not_import_tensorflow():
    code = "import sys; from pipeline.cli import main; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"
