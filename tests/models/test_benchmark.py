import json

from models.benchmark import main


def test_benchmark_prints_every_figure(capsys, tiny_ckpt_path):
    assert main(["--scans", "4", "--workers", "1", "--train-batches", "1", "--threads", "1",
                 "--model", str(tiny_ckpt_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("generate_scans_per_s", "train_images_per_s", "infer_images_per_s_batch32"):
        assert out[key] > 0
    assert out["cpu_count"] >= 1 and "loadavg_1min_start" in out
