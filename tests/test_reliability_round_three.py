"""Issue 34 (reliability, round two), the items left after round two: relative paths that work from anywhere,
a pipeline that never deletes a folder it cannot parse, output mistakes caught before any work, and one line
(exit 2) for every OS error and bad input of items 9 and 10. Faults are real where they can be: a full disk is
a small tmpfs when one can be mounted (else a file size limit, ``ulimit -f``, in a child process), a read-only
folder is ``chmod``, Ctrl-C is a real SIGINT. docs/reliability.md maps each guarantee to its test."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from cli_runner import run_synthtune as run_main, run_synthtune_output
from test_cli import REPO, ROWS, base_args, data_file  # noqa: F401 - data_file is a fixture
from test_reliability import fit_run, one_error_line

TESTS = Path(__file__).resolve().parent


def child_env(**extra):
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS)]), OMP_NUM_THREADS="1", **extra)


# ------------------------------------------------------------------ 2. relative backbone and data paths
@pytest.mark.parametrize("backbone", ["./tiny", "tiny"])
def test_a_run_trained_on_relative_paths_predicts_and_resumes_from_anywhere(backbone, tiny_llama, tmp_path, capsys,
                                                                          monkeypatch):
    """``fit --model.init_args.backbone ./tiny`` recorded './tiny' in the checkpoint and '<abs>/tiny' in
    config.yaml, so predicting with that config (and resuming) was refused as "does not match"; a bare
    ``tiny`` stayed relative in config.yaml and failed from another folder."""
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    shutil.copytree(tiny_llama, work / "tiny")
    elsewhere.mkdir()
    (work / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    monkeypatch.chdir(work)
    fit = ["fit", *base_args(backbone, "data.jsonl", "runs/rel", "--trainer.max_steps", "1")]
    code, err = run_main(fit, capsys)
    assert code == 0, err
    saved = yaml.safe_load((work / "runs/rel/config.yaml").read_text())
    assert saved["model"]["init_args"]["backbone"] == str(work / "tiny")
    assert saved["data"]["init_args"]["path"] == str(work / "data.jsonl")
    last = work / "runs/rel/checkpoints/last.ckpt"
    assert torch.load(last, weights_only=False)["synthtune"]["backbone"] == str(work / "tiny")

    # the same relative command resumes
    code, err = run_main([*fit, "--ckpt_path", "last", "--trainer.max_steps", "2"], capsys)
    assert code == 0, err
    assert torch.load(last, weights_only=False)["global_step"] == 2

    monkeypatch.chdir(elsewhere)  # the saved config, from another folder: predict, and fit --ckpt_path last
    config = str(Path("..") / "work/runs/rel/config.yaml")
    code, err = run_main(["predict", "--config", config, "--ckpt_path", "last"], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in (work / "runs/rel/samples.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and rows[0]["params"]["backbone"] == str(work / "tiny")
    code, err = run_main(["fit", "--config", config, "--ckpt_path", "last", "--trainer.max_steps", "3"], capsys)
    assert code == 0, err
    assert torch.load(last, weights_only=False)["global_step"] == 3
    assert not (elsewhere / "runs").exists()  # nothing written relative to the other folder


def test_local_path_is_one_form_for_every_spelling(tmp_path):
    from synthtune.lightning_cli import local_path

    (tmp_path / "tiny").mkdir()
    (tmp_path / "train").mkdir()
    (tmp_path / "d.jsonl").write_text("{}\n")
    key = "model.init_args.backbone"
    assert local_path(key, "tiny", tmp_path) == local_path(key, "./tiny", tmp_path) == str(tmp_path / "tiny")
    assert local_path(key, str(tmp_path / "x/../tiny"), tmp_path) == str(tmp_path / "tiny")
    assert local_path(key, "smollm2-135m", tmp_path) == "smollm2-135m"  # an alias, never a folder
    assert local_path(key, "org/not-here", tmp_path) == "org/not-here"  # a hub id
    assert local_path("data.init_args.split", "train", tmp_path) == "train"  # a split beside a folder "train"
    assert local_path("data.init_args.path", "d.jsonl", tmp_path) == str(tmp_path / "d.jsonl")
    assert local_path("data.init_args.path", "missing.jsonl", tmp_path) == "missing.jsonl"  # its own error later


def pipeline_yaml(work: Path, backbone: str, root: str = "pipe") -> Path:
    """A fit + predict pipeline on the tiny model whose fit keeps a checkpoint every 2 steps, all paths relative."""
    (work / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    fit = {
        "seed_everything": 0,
        "model": {"class_path": "synthtune.lightning_modules.SoftSRVModule",
                  "init_args": {"backbone": backbone, "parameterization": "mc", "prompt_length": 4, "mlp_hidden": 8,
                                "lr": 0.01, "max_new_tokens": 5, "seed": 3}},
        "data": {"class_path": "synthtune.datamodules.TextDataModule",
                 "init_args": {"path": "train.jsonl", "text_template": "{question}", "batch_size": 4,
                               "num_samples": 4}},
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 4, "enable_progress_bar": False,
                    "enable_model_summary": False, "logger": False},
        "checkpoint": {"every_n_train_steps": 2, "save_top_k": -1},
    }
    (work / "fit.yaml").write_text(yaml.safe_dump(fit))
    config = work / "pipeline.yaml"
    config.write_text(yaml.safe_dump({"root": root, "fit": {"config": "fit.yaml"}, "predict": {"overrides": []}}))
    return config


@pytest.fixture
def pipeline_run(tiny_llama, tmp_path, monkeypatch, capsys):
    """A finished fit + predict pipeline with ``backbone: ./tiny``, run from ``work``; returns work."""
    work = tmp_path / "work"
    shutil.copytree(tiny_llama, work / "tiny")
    pipeline_yaml(work, "./tiny")
    monkeypatch.chdir(work)
    code, err = run_main(["pipeline", "--config", "pipeline.yaml"], capsys)
    assert code == 0, err  # item 2: it trained, then failed at predict ("checkpoint does not match")
    return work


def test_a_pipeline_with_a_relative_backbone_trains_and_predicts(pipeline_run):
    rows = [json.loads(line) for line in (pipeline_run / "pipe/predict/rows.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["params"]["backbone"] == str(pipeline_run / "tiny")


def checkpoints(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob("*.ckpt"))}


# ------------------------------------------------------------------ 7. the pipeline never deletes what it cannot parse
def test_a_corrupt_manifest_stops_the_pipeline_and_deletes_nothing(pipeline_run, capsys):
    fit = pipeline_run / "pipe" / "fit"
    manifest = fit / "manifest.json"
    manifest.write_text(manifest.read_text()[:40])  # cut off
    before = {p.relative_to(fit): p.read_bytes() for p in fit.rglob("*") if p.is_file()}
    code, err = run_main(["pipeline", "--config", "pipeline.yaml"], capsys)
    shown = Path("pipe/fit/manifest.json")  # the root as the YAML gives it
    one_error_line(code, err, f"{shown} cannot be read (not valid JSON at line ", "nothing was deleted",
                   "--from_stage fit")
    assert {p.relative_to(fit): p.read_bytes() for p in fit.rglob("*") if p.is_file()} == before  # it wiped fit/

    # a stage after it that needs it is refused the same way
    code, err = run_main(["pipeline", "--config", "pipeline.yaml", "--stages", "predict"], capsys)
    one_error_line(code, err, f"{shown} cannot be read", "--from_stage fit")

    # naming the stage runs it again, with the old folder set aside (renamed), not deleted
    code, err = run_main(["pipeline", "--config", "pipeline.yaml", "--from_stage", "fit"], capsys)
    assert code == 0, err
    aside = [p for p in fit.parent.iterdir() if p.name.startswith("fit.set-aside-")]
    assert len(aside) == 1
    assert {p.relative_to(aside[0]): p.read_bytes() for p in aside[0].rglob("*") if p.is_file()} == before
    assert json.loads(manifest.read_text())["stage"] == "fit"


def test_a_deleted_last_ckpt_resumes_from_the_newest_checkpoint_left(pipeline_run, capsys, monkeypatch):
    from synthtune.pipeline import stages

    folder = pipeline_run / "pipe" / "fit" / "checkpoints"
    kept = checkpoints(folder)
    assert {"last.ckpt", "epoch=0-step=2.ckpt", "epoch=0-step=4.ckpt"} <= set(kept), kept
    (folder / "last.ckpt").unlink()
    ran = []
    monkeypatch.setattr(stages, "execute", lambda asked, real=stages.execute: (ran.append(asked), real(asked))[1])
    code, err = run_main(["pipeline", "--config", "pipeline.yaml"], capsys)
    assert code == 0, err
    fit_run = ran[0]  # the synthtune.api request the fit stage ran
    resumed = Path(fit_run.overrides["ckpt_path"]).resolve()
    assert fit_run.subcommand == "fit" and resumed == folder / "epoch=0-step=4.ckpt"
    after = checkpoints(folder)
    # the other checkpoints are the same files (not wiped and retrained), and last.ckpt is back at step 4
    assert {k: v for k, v in after.items() if k != "last.ckpt"} == {k: v for k, v in kept.items() if k != "last.ckpt"}
    assert torch.load(folder / "last.ckpt", weights_only=False)["global_step"] == 4
    assert json.loads((folder.parent / "manifest.json").read_text())["stage"] == "fit"


def test_a_stage_folder_of_unknown_origin_is_not_cleared(pipeline_run, capsys):
    """Files in a stage folder with neither a manifest nor .started (put there by hand): not the pipeline's to delete."""
    predict = pipeline_run / "pipe" / "predict"
    (predict / "manifest.json").unlink()
    code, err = run_main(["pipeline", "--config", "pipeline.yaml"], capsys)
    one_error_line(code, err, "cannot tell what made pipe/predict", "neither manifest.json nor .started",
                   "--from_stage predict")
    assert (predict / "rows.jsonl").is_file()


# ------------------------------------------------------------------ real filesystems for the faults below
import faults  # noqa: E402 - the fault injection of round two, with a tmpfs and FillDisk


@pytest.fixture
def tmpfs(tmp_path):
    """A real 16 MiB tmpfs (a small disk that fills up); skipped where mounting is not allowed, where the
    ``ulimit -f`` tests below cover the same one-line handling with EFBIG."""
    folder = tmp_path / "tmpfs"
    if not faults.mount_tmpfs(folder, "16m"):
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
    yield folder
    faults.unmount(folder)


@pytest.fixture
def read_only_dir(tmp_path):
    """A real read-only filesystem (a tmpfs remounted ro) holding ``existing.jsonl`` and a folder ``features``:
    writes fail with EROFS even for root, unlike chmod."""
    folder = tmp_path / "ro"
    if not faults.mount_tmpfs(folder, "1m"):
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
    (folder / "existing.jsonl").write_text(json.dumps({"text": "kept"}) + "\n")
    (folder / "features").mkdir()
    faults.remount_read_only(folder)
    yield folder
    faults.unmount(folder)


TEXTS = [f"row {i}: Tom buys {i} red apples and {i + 3} green pears at the market on day {i % 7}" for i in range(80)]


def rows_file(path: Path, rows=None) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in (rows or [{"text": t} for t in TEXTS])))
    return path


CURATE = ["--num_samples", "5", "--clusters", "2", "--svd_components", "2"]


def no_work(monkeypatch):
    """Make curate's first step fail loudly, proving a refusal came before any work."""
    def started(*args, **kwargs):
        raise AssertionError("curate started its work")
    import synthtune.commands  # noqa: F401 - loads the module, whose name the package shadows with the function

    monkeypatch.setattr(sys.modules["synthtune.api.curate"], "read_input", started)


# ------------------------------------------------------------------ 8. output paths checked before any work
def test_a_symlinked_output_is_written_through_to_its_target(tiny_llama, data_file, tmp_path, capsys):
    """The merge replaced the link by a regular file, and its target was never written."""
    root = tmp_path / "run"
    fit_run(tiny_llama, data_file, root, capsys)
    target, link = tmp_path / "store" / "samples.jsonl", tmp_path / "samples.jsonl"
    target.parent.mkdir()
    link.symlink_to(target)
    predict = ["predict", "--config", str(root / "config.yaml"), "--ckpt_path", "last", "--writer.output_path",
               str(link)]
    code, err = run_main(predict, capsys)
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert [json.loads(line)["id"] for line in target.read_text().splitlines()] == list(range(6))
    before = target.read_bytes()
    code, err = run_main(predict, capsys)  # resumes through the link: nothing left to generate
    assert code == 0, err
    assert link.is_symlink() and target.read_bytes() == before

    data = rows_file(tmp_path / "in.jsonl")
    curated, curated_link = tmp_path / "store" / "curated.jsonl", tmp_path / "curated.jsonl"
    curated_link.symlink_to(curated)
    code, err = run_main(["curate", "--input", str(data), "--output", str(curated_link), *CURATE], capsys)
    assert code == 0, err
    assert curated_link.is_symlink() and len(curated.read_text().splitlines()) == 5


def test_a_curate_output_that_is_a_directory_or_read_only_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    data = rows_file(tmp_path / "in.jsonl")
    no_work(monkeypatch)
    folder = tmp_path / "out"
    folder.mkdir()
    code, err = run_main(["curate", "--input", str(data), "--output", str(folder), *CURATE], capsys)
    one_error_line(code, err, f"--output {folder} is a directory", f"--output {folder / 'rows.jsonl'}")
    assert list(folder.iterdir()) == []

    read_only = tmp_path / "kept.jsonl"
    read_only.write_text("mine\n")
    read_only.chmod(0o444)  # refused even for root, who could write it: it was made read-only on purpose
    code, err = run_main(["curate", "--input", str(data), "--output", str(read_only), *CURATE], capsys)
    one_error_line(code, err, f"--output {read_only} is read-only", "chmod u+w", "another --output")
    assert read_only.read_text() == "mine\n"


def test_an_output_on_a_read_only_disk_is_refused_before_any_work(read_only_dir, tiny_llama, data_file, tmp_path,
                                                                  capsys, monkeypatch):
    root = tmp_path / "run"
    fit_run(tiny_llama, data_file, root, capsys)
    code, err = run_main(["predict", "--config", str(root / "config.yaml"), "--ckpt_path", "last",
                          "--writer.output_path", str(read_only_dir / "samples.jsonl")], capsys)
    one_error_line(code, err, f"cannot write samples to {read_only_dir} (Read-only file system)",
                   "another --writer.output_path")
    data = rows_file(tmp_path / "in.jsonl")
    no_work(monkeypatch)
    code, err = run_main(["curate", "--input", str(data), "--output", str(read_only_dir / "existing.jsonl"),
                          *CURATE], capsys)
    one_error_line(code, err, f"to {read_only_dir} (Read-only file system)", "another --output")


def test_the_writable_check_is_honest_on_a_full_disk(tmpfs, tiny_llama, data_file, tmp_path, capsys, monkeypatch):
    """An empty probe file needs no data block, so the check passed on a full disk and the run failed after
    the work; now it writes 64 KiB (room for a first shard) and fsyncs."""
    root = tmp_path / "run"
    fit_run(tiny_llama, data_file, root, capsys)
    faults.fill(tmpfs)
    code, err = run_main(["fit", *base_args(tiny_llama, data_file, tmpfs / "run", "--trainer.max_steps", "1")],
                         capsys)
    one_error_line(code, err, f"cannot write the run (config, checkpoints, logs) to {tmpfs / 'run'} "
                              "(No space left on device)", "--trainer.default_root_dir")
    code, err = run_main(["predict", "--config", str(root / "config.yaml"), "--ckpt_path", "last",
                          "--writer.output_path", str(tmpfs / "samples.jsonl")], capsys)
    one_error_line(code, err, f"cannot write samples to {tmpfs} (No space left on device)")
    assert not list(tmpfs.glob("samples.jsonl*"))
    no_work(monkeypatch)
    code, err = run_main(["curate", "--input", str(rows_file(tmp_path / "in.jsonl")), "--output",
                          str(tmpfs / "curated.jsonl"), *CURATE], capsys)
    one_error_line(code, err, f"to {tmpfs} (No space left on device)", "another --output")


# ------------------------------------------------------------------ 9. one line for a full disk anywhere
def fill_at(tmpfs: Path, hook: str, batch: int = -1) -> list[str]:
    """``--trainer.callbacks`` that fill the tmpfs at ``hook`` (another process filling the disk mid-run)."""
    spec = {"class_path": "faults.FillDisk", "init_args": {"folder": str(tmpfs), "hook": hook, "batch": batch}}
    return ["--trainer.callbacks", json.dumps([spec])]


def test_a_full_disk_when_the_config_is_saved_is_one_line(tmpfs, tiny_llama, data_file, capsys):
    root = tmpfs / "run"
    code, err = run_main(["fit", *base_args(tiny_llama, data_file, root, "--trainer.max_steps", "1"),
                          *fill_at(tmpfs, "on_fit_start")], capsys)
    one_error_line(code, err, f"{root / 'config.yaml'}: No space left on device", "files written before are unchanged",
                   "free some space", "run the same command again")
    assert not (root / "config.yaml").exists() and not list(root.glob(".config.yaml.*"))


def test_a_disk_filling_up_during_training_keeps_the_previous_checkpoint(tmpfs, tiny_llama, data_file, capsys):
    root = tmpfs / "run"
    last = fit_run(tiny_llama, data_file, root, capsys)
    before = last.read_bytes()
    code, err = run_main(["fit", *base_args(tiny_llama, data_file, root, "--trainer.max_steps", "2"),
                          "--ckpt_path", "last", *fill_at(tmpfs, "on_train_batch_end")], capsys)
    one_error_line(code, err, f"cannot write checkpoint {last} (No space left on device)",
                   "the previous checkpoint there is unchanged")
    assert last.read_bytes() == before and not list(last.parent.glob(".*.tmp"))
    (tmpfs / "filler").unlink()
    code, err = run_main(["fit", *base_args(tiny_llama, data_file, root, "--trainer.max_steps", "2"),
                          "--ckpt_path", "last"], capsys)
    assert code == 0, err
    assert torch.load(last, weights_only=False)["global_step"] == 2


def predict_args(root: Path, out: Path, num: int, *extra: str) -> list[str]:
    return ["predict", "--config", str(root / "config.yaml"), "--ckpt_path", "last", "--writer.output_path",
            str(out), "--data.init_args.num_samples", str(num), "--data.init_args.predict_batch_size", "2", *extra]


def sample_ids(path: Path) -> list[int]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_a_disk_filling_up_during_predict_keeps_the_shard_and_resumes(tmpfs, tiny_llama, data_file, tmp_path, capsys):
    root, out = tmp_path / "run", tmpfs / "samples.jsonl"
    fit_run(tiny_llama, data_file, root, capsys)
    shard = out.with_name("samples.jsonl.rank0.partial.jsonl")
    batch = ["--data.init_args.predict_batch_size", "16"]  # 16 rows of ~350 bytes: a batch spans pages
    code, err = run_main([*predict_args(root, out, 48, *fill_at(tmpfs, "on_predict_batch_start", batch=1)), *batch],
                         capsys)
    one_error_line(code, err, f"{shard}: No space left on device", "run the same command again")
    whole = []
    for line in shard.read_text().splitlines():
        try:
            whole.append(json.loads(line))
        except json.JSONDecodeError:  # the line the disk cut off: skipped with a warning on resume
            pass
    assert [r["id"] for r in whole[:16]] == list(range(16)) and len(whole) < 48  # the first batch, whole
    (tmpfs / "filler").unlink()
    code, err = run_main([*predict_args(root, out, 48), *batch], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == list(range(48)) and rows[:len(whole)] == whole  # kept, not generated again


def test_a_full_disk_at_the_merge_keeps_the_shards_and_a_fold_only_rerun_updates_the_summary(
        tmpfs, tiny_llama, data_file, tmp_path, capsys):
    """Item 9 (the merge) and item 10 (the rerun that only folds the shards left the .summary.json of an older
    run, since Lightning skips the predict loop when nothing is left to generate)."""
    root, out = tmp_path / "run", tmpfs / "samples.jsonl"
    fit_run(tiny_llama, data_file, root, capsys)
    summary = out.with_name("samples.jsonl.summary.json")
    code, err = run_main(predict_args(root, out, 2), capsys)
    assert code == 0, err
    assert json.loads(summary.read_text())["samples"] == 2
    code, err = run_main(predict_args(root, out, 6, *fill_at(tmpfs, "on_predict_epoch_end")), capsys)
    one_error_line(code, err, f"{out}: No space left on device", "files written before are unchanged")
    assert sample_ids(out) == [0, 1] and sample_ids(out.with_name("samples.jsonl.rank0.partial.jsonl")) == [2, 3, 4, 5]
    (tmpfs / "filler").unlink()
    code, err = run_main(predict_args(root, out, 6), capsys)  # nothing left to generate: only the fold
    assert code == 0, err
    assert sample_ids(out) == list(range(6)) and json.loads(summary.read_text())["samples"] == 6


def one_error_line_of_a_child(code: int, err: str, *parts: str) -> str:
    """A child process's stderr also has Lightning's info lines: its last line is the one error line."""
    assert "Traceback" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err[-3000:]
    return one_error_line(code, errors[0], *parts)


def limited(limit: int):
    """``ulimit -f`` (RLIMIT_FSIZE, in bytes) for a child process: a write past it fails with EFBIG."""
    import resource

    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_file_size_limit_is_one_line_for_a_checkpoint_and_a_data_command(tiny_llama, data_file, tmp_path):
    """EFBIG through a real file size limit (``ulimit -f``) in a child process, on any machine."""
    root = tmp_path / "run"
    fit = [sys.executable, "-m", "synthtune.cli", "fit",
           *base_args(tiny_llama, data_file, root, "--trainer.max_steps", "1")]
    done = subprocess.run(fit, env=child_env(), capture_output=True, text=True, timeout=300,
                          preexec_fn=limited(512 << 10))  # the 1.2 MB checkpoint does not fit; config.yaml does
    one_error_line_of_a_child(done.returncode, done.stderr, f"cannot write checkpoint {root / 'checkpoints' / 'last.ckpt'} "
                                                 "(File too large)")
    assert (root / "config.yaml").is_file() and not (root / "checkpoints" / "last.ckpt").exists()

    data = rows_file(tmp_path / "big.jsonl", [{"text": f"{t} {'x' * 200} {i}"} for i, t in enumerate(TEXTS * 10)])
    out = tmp_path / "curated.jsonl"
    curate = [sys.executable, "-m", "synthtune.cli", "curate", "--input", str(data), "--output", str(out),
              "--num_samples", "700", "--clusters", "2", "--svd_components", "2"]
    done = subprocess.run(curate, env=child_env(), capture_output=True, text=True, timeout=300,
                          preexec_fn=limited(128 << 10))  # 700 rows of ~300 bytes do not fit
    one_error_line_of_a_child(done.returncode, done.stderr, f"{out}: File too large", "ulimit -f")
    assert not out.exists() and not list(tmp_path.glob(".curated.jsonl.*"))


# ------------------------------------------------------------------ 9. the data commands on files they choked on
def reference_file(tmp_path: Path) -> Path:
    return rows_file(tmp_path / "reference.jsonl", [{"text": f"Ann reads {i} pages a day for {i + 2} days in June"}
                                                    for i in range(70)])


def with_invalid_utf8(path: Path) -> Path:
    """The rows of TEXTS with one line that is not UTF-8 (a Latin-1 'é') in the middle."""
    lines = [json.dumps({"text": t}).encode() for t in TEXTS]
    lines.insert(10, b'{"text": "caf\xe9 au lait"}')
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def gzipped(path: Path) -> Path:
    import gzip

    path.write_bytes(gzip.compress("".join(json.dumps({"text": t}) + "\n" for t in TEXTS).encode()))
    return path


@pytest.mark.parametrize("kind", ["invalid_utf8", "gzip", "gzip_suffix", "json_list"])
def test_curate_decontaminate_and_score_read_what_they_choked_on(kind, tiny_llama, tmp_path, capsys):
    """An invalid UTF-8 line, a gzip file (with or without .gz) and a .json file holding a list were a
    UnicodeDecodeError traceback (or "no rows"): the shared row reader skips the bad line with a warning
    naming it, decompresses gzip and reads a JSON array."""
    data = {"invalid_utf8": lambda: with_invalid_utf8(tmp_path / "in.jsonl"),
            "gzip": lambda: gzipped(tmp_path / "in.jsonl"),
            "gzip_suffix": lambda: gzipped(tmp_path / "in.jsonl.gz"),
            "json_list": lambda: (tmp_path / "in.json").write_text(json.dumps([{"text": t} for t in TEXTS], indent=1))
            and tmp_path / "in.json"}[kind]()
    reference = reference_file(tmp_path)
    code, out, err = run_synthtune_output(["curate", "--input", str(data), "--output", str(tmp_path / "c.jsonl"),
                                           *CURATE], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "c.jsonl.report.json").read_text())
    assert report["input"] == 80 + (kind == "invalid_utf8")
    assert report["broken_lines_skipped"] == (1 if kind == "invalid_utf8" else 0)
    if kind == "invalid_utf8":
        assert "1 broken JSON line(s) at line 11; skipped them" in " ".join((out + err).split())
    code, err = run_main(["decontaminate", "--input", str(data), "--reference", str(reference), "--output",
                          str(tmp_path / "d.jsonl")], capsys)
    assert code == 0, err
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == 80
    code, err = run_main(["score", "mauve", "--synthetic", str(data), "--reference", str(reference), "--featurizer",
                          tiny_llama, "--clusters", "2", "--seeds", "1", "--kmeans_num_redo", "1", "--no_plot",
                          "--no_cache", "--output", str(tmp_path / "score.json")], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "score.json").read_text())["num_synthetic"] == 80


@pytest.mark.parametrize("template, message", [
    ("{}", "has a positional field {}; name the row's field in it, e.g. {question}"),
    ("{question:d}", "field {question:d} has the format spec 'd', which text does not take"),
])
def test_a_template_that_cannot_fill_a_row_is_one_line(template, message, tiny_llama, data_file, tmp_path, capsys):
    """"{}" was "IndexError: Replacement index 0 out of range" and "{question:d}" "ValueError: Unknown format
    code 'd' for object of type 'str'", both tracebacks."""
    code, err = run_main(["fit", *base_args(tiny_llama, data_file, tmp_path / "run", "--trainer.max_steps", "1"),
                          "--data.init_args.text_template", template], capsys)
    one_error_line(code, err, f"text_template {template!r}", message)
    assert not (tmp_path / "run" / "config.yaml").exists()


def mauve_args(tiny_llama: str, tmp_path: Path) -> list[str]:
    return ["score", "mauve", "--synthetic", str(rows_file(tmp_path / "in.jsonl")), "--reference",
            str(reference_file(tmp_path)), "--featurizer", tiny_llama, "--clusters", "2", "--seeds", "1",
            "--kmeans_num_redo", "1", "--no_plot"]


def test_a_read_only_cache_is_one_line(read_only_dir, tiny_llama, tmp_path, capsys, monkeypatch):
    """The feature cache on a read-only disk: a folder that cannot be created, and one that exists but cannot
    be written; both name the folder and SYNTHTUNE_CACHE."""
    monkeypatch.setenv("SYNTHTUNE_CACHE", str(read_only_dir / "cache"))
    code, err = run_main(mauve_args(tiny_llama, tmp_path), capsys)
    one_error_line(code, err, f"cannot create the cache folder {read_only_dir / 'cache' / 'features'} "
                              "(Read-only file system)", "set SYNTHTUNE_CACHE to a folder you can write to")
    monkeypatch.setenv("SYNTHTUNE_CACHE", str(read_only_dir))  # features/ exists, read-only
    code, err = run_main(mauve_args(tiny_llama, tmp_path), capsys)
    one_error_line(code, err, f"{read_only_dir / 'features'}", "Read-only file system",
                   "set SYNTHTUNE_CACHE to a folder you can write to")
    code, err = run_main([*mauve_args(tiny_llama, tmp_path), "--no_cache"], capsys)
    assert code == 0, err


def test_ctrl_c_in_a_data_command_is_one_line_and_leaves_no_half_file(tmp_path):
    """A real SIGINT to a running ``synthtune curate``: KeyboardInterrupt was a traceback."""
    data = rows_file(tmp_path / "big.jsonl", [{"text": f"{t} {i}"} for i, t in enumerate(TEXTS * 400)])
    out, inside = tmp_path / "curated.jsonl", tmp_path / "inside"
    out.write_text("the old output\n")
    # a shell starts background jobs with SIGINT ignored, and Python then installs no KeyboardInterrupt handler:
    # restore the handler a terminal's Ctrl-C finds, so the test does not depend on how pytest was started
    script = ("import pathlib, signal, sys\n"
              "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "from synthtune.cli import main\n"
              f"pathlib.Path({str(inside)!r}).touch()\n"  # imports done: a SIGINT from now on reaches main
              "main(sys.argv[1:])\n")
    child = subprocess.Popen([sys.executable, "-c", script, "curate", "--input", str(data), "--output", str(out),
                              "--num_samples", "3000", "--clusters", "8"], env=child_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not inside.exists() and child.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        assert child.poll() is None, child.stderr.read()
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 130, err[-3000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted (Ctrl-C)"), err[-3000:]
    assert out.read_text() == "the old output\n" and not list(tmp_path.glob(".curated.jsonl.*"))


# ------------------------------------------------------------------ 10. the smaller ones
def test_two_concurrent_curates_into_one_output_are_refused(tmp_path, capsys):
    """Two real processes: the first holds <output>.lock while it works; the second stops at once, naming it,
    instead of leaving the rows of one run beside the report of the other."""
    data = rows_file(tmp_path / "in.jsonl")
    out, hold, inside = tmp_path / "curated.jsonl", tmp_path / "hold", tmp_path / "inside"
    hold.touch()
    script = ("import pathlib, sys, time\n"  # the first curate pauses in its work until the test lets it go
              "import synthtune.commands\n"
              "module = sys.modules['synthtune.api.curate']\n"
              "real = module.select_diverse\n"
              "def paused(*a, **k):\n"
              f"    pathlib.Path({str(inside)!r}).touch()\n"
              f"    while pathlib.Path({str(hold)!r}).exists(): time.sleep(0.05)\n"
              "    return real(*a, **k)\n"
              "module.select_diverse = paused\n"
              "from synthtune.cli import main\n"
              "main(sys.argv[1:])\n")
    first = subprocess.Popen([sys.executable, "-c", script, "curate", "--input", str(data), "--output", str(out),
                              *CURATE], env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not inside.exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert first.poll() is None and inside.exists(), first.stderr.read()
        code, err = run_main(["curate", "--input", str(data), "--output", str(out), "--num_samples", "7",
                              "--clusters", "2", "--svd_components", "2"], capsys)
        one_error_line(code, err, f"{out} is being written by pid {first.pid} on ", f"(lock {out}.lock)",
                       "another --output")
        hold.unlink()
        _, first_err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 0, first_err[-3000:]
    assert len(out.read_text().splitlines()) == 5
    assert json.loads((tmp_path / "curated.jsonl.report.json").read_text())["selected"] == 5
    code, err = run_main(["curate", "--input", str(data), "--output", str(out), *CURATE], capsys)
    assert code == 0, err  # the lock went with the first process


def test_num_samples_0_is_one_line_not_a_silent_success(tiny_llama, data_file, tmp_path, capsys):
    root = tmp_path / "run"
    fit_run(tiny_llama, data_file, root, capsys)
    out = tmp_path / "zero.jsonl"
    code, err = run_main(predict_args(root, out, 0), capsys)
    one_error_line(code, err, "--data.init_args.num_samples is 0", "pass 1 or more")
    assert not list(tmp_path.glob("zero.jsonl*"))


def test_a_yaml_tab_error_names_the_file(tiny_llama, data_file, tmp_path, capsys):
    """jsonargparse says "<unicode string>", line 2; the line names the file, the place and the fix."""
    bad = tmp_path / "tabs.yaml"
    bad.write_text("model:\n\tinit_args:\n    prompt_length: 4\n")
    code, err = run_main(["fit", *base_args(tiny_llama, data_file, tmp_path / "run"), "--config", str(bad)], capsys)
    one_error_line(code, err, f"{bad}: not valid YAML at line 2, column 1", "indent with spaces, not tabs")
    assert "<unicode string>" not in err
    bad.write_text("input: in.jsonl\n\toutput: out.jsonl\n")
    code, err = run_main(["curate", "--config", str(bad)], capsys)
    one_error_line(code, err, f"{bad}: not valid YAML at line 2, column 1", "indent with spaces, not tabs")
