"""The product end to end on a tiny synthesised clip: train -> generate -> evaluate,
exact resume, interruption, and one-line errors for user mistakes."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

pytest.importorskip("av", reason="PyAV is not installed: the product tests need it")

from s2v import checkpoint as ckpt  # noqa: E402
from s2v.cli import main  # noqa: E402
from tests.media.factory import tone, write_audio, write_video  # noqa: E402

TINY = ["--size", "16", "--frames", "4", "--channels-base", "16", "--max-channels", "8",
        "--config", "full", "--no-progress"]
TINY_API = dict(size=16, frames=4, channels_base=16, max_channels=8, progress=False,
                samples=False)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """2.5 s at 30 fps: a bar that moves with a tone whose pitch rises."""
    folder = tmp_path_factory.mktemp("clip")
    n = 75
    frames = np.zeros((n, 24, 24, 3), np.uint8)
    for i in range(n):
        frames[i, :, i % 24] = 255
    path = folder / "clip.mp4"
    write_video(path, frames, fps=30, audio=tone(2.5, 44100, freq=300, channels=2))
    return path


def test_train_generate_evaluate(clip, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(clip), "--out", str(run), "--steps", "2",
                 "--checkpoint-every", "2", *TINY]) == 0
    assert "step 2/2" in capsys.readouterr().out
    saved = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert saved["step"] == 2 and saved["config"]["data"]["size"] == 16
    assert os.path.isabs(saved["config"]["data"]["video"])  # resumable from anywhere
    assert {"generator", "video_discriminator", "image_discriminator", "optimizer_g",
            "sampler", "states", "rng"} <= set(saved)
    assert (run / "samples" / "step_0000002.mp4").is_file()
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert any("validation" in r for r in log)

    out = tmp_path / "reanimated.mp4"
    out.write_bytes(b"old file")  # replaced only once the new one is complete
    assert main(["generate", str(run), str(clip), "--out", str(out), "--no-progress"]) == 0
    assert "real time" in capsys.readouterr().out
    from s2v.media import read_audio, read_frames
    driving = read_audio(clip).size / 64000  # the decoded sound, AAC padding included
    frames = read_frames(out, 20, 16)
    assert abs(len(frames) - driving * 20) <= 1
    assert abs(read_audio(out).size / 64000 - driving) <= 0.05  # one frame at 20 fps
    assert not [p.name for p in tmp_path.iterdir() if ".part" in p.name]  # no partial file left

    metrics = tmp_path / "metrics.json"
    assert main(["evaluate", str(run / "checkpoint.pt"), "--json", str(metrics)]) == 0
    table = capsys.readouterr().out
    assert "psnr" in table and "mean frame" in table
    result = json.loads(metrics.read_text())
    assert {"mse", "psnr", "ssim"} <= set(result) and result["frames"] == 10


@pytest.mark.parametrize("backend", ["auto", "eager"])
def test_bf16_train_and_generate(clip, tmp_path, capsys, backend):
    """--precision bf16 (autocast) through the fused CPU kernels as through eager."""
    run = tmp_path / "run"
    assert main(["train", str(clip), "--out", str(run), "--steps", "2", "--precision", "bf16",
                 "--backend", backend, *TINY]) == 0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    losses = [r["loss_g"] for r in log if "loss_g" in r]
    assert losses and all(np.isfinite(losses))
    out = tmp_path / "bf16.mp4"
    assert main(["generate", str(run), str(clip), "--out", str(out), "--precision", "bf16",
                 "--no-progress"]) == 0
    assert out.stat().st_size > 0


def test_resume_is_exact(clip, tmp_path):
    import s2v

    s2v.train(clip, tmp_path / "straight", steps=6, checkpoint_every=3, **TINY_API)
    s2v.train(clip, tmp_path / "split", steps=3, checkpoint_every=3, **TINY_API)
    s2v.train(None, tmp_path / "split", resume=True, steps=6)
    a = ckpt.load(tmp_path / "straight")
    b = ckpt.load(tmp_path / "split")
    assert a["step"] == b["step"] == 6
    for key, value in a["generator"].items():
        assert torch.equal(value, b["generator"][key]), key
    for key, value in a["video_discriminator"].items():
        assert torch.equal(value, b["video_discriminator"][key]), key


def test_sigint_leaves_a_checkpoint_that_resume_continues(clip, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "s2v", "train", str(clip), "--out", str(run),
           "--steps", "1000", "--checkpoint-every", "1", "--validate-every", "1000", *TINY]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (run / "checkpoint.pt").exists(), proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "stopped by SIGINT" in out
    stopped_at = ckpt.load(run)["step"]
    assert 1 <= stopped_at < 1000
    assert main(["train", str(clip), "--out", str(run), "--resume",
                 "--steps", str(stopped_at + 1), "--no-progress"]) == 0
    assert ckpt.load(run)["step"] == stopped_at + 1


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_user_mistakes_give_one_line(clip, tmp_path, capsys):
    run = tmp_path / "run"
    assert "no such file" in _error(capsys, ["train", str(tmp_path / "none.mp4"), "--out",
                                             str(run), *TINY])
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    assert "not a readable video file" in _error(capsys, ["train", str(text), "--out",
                                                           str(tmp_path / "r1"), *TINY])
    mute = tmp_path / "mute.mp4"
    write_video(mute, np.zeros((40, 16, 16, 3), np.uint8), fps=20)
    assert "has no audio stream" in _error(capsys, ["train", str(mute), "--out",
                                                    str(tmp_path / "r2"), *TINY])
    assert "too short" in _error(capsys, ["train", str(clip), "--out", str(tmp_path / "r3"),
                                          *TINY, "--frames", "64"])
    assert "--size" in _error(capsys, ["train", str(clip), "--out", str(tmp_path / "r4"),
                                       *TINY, "--size", "24"])
    assert "--steps" in _error(capsys, ["train", str(clip), "--out", str(tmp_path / "r5"),
                                        *TINY, "--steps", "0"])
    assert "outside" in _error(capsys, ["train", str(clip), "--out", str(tmp_path / "r6"),
                                        *TINY, "--crop", "20", "0", "10", "10"])
    assert main(["train", str(clip), "--out", str(run), "--steps", "1", *TINY]) == 0
    capsys.readouterr()
    assert "--resume" in _error(capsys, ["train", str(clip), "--out", str(run), *TINY])
    assert "differs from the run's" in _error(capsys, ["train", str(clip), "--out", str(run),
                                                       "--resume", "--size", "32"])
    assert "contradict" in _error(capsys, ["train", str(clip), "--out", str(run),
                                           "--resume", "--force"])
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"\x00" * 100)
    assert "not an s2v checkpoint" in _error(
        capsys, ["generate", str(broken), str(clip), "--out", str(tmp_path / "x.mp4")])
    assert "no such checkpoint" in _error(
        capsys, ["evaluate", str(tmp_path / "nothing")])
    assert "no such file" in _error(
        capsys, ["generate", str(run), str(tmp_path / "none.wav"), "--out",
                 str(tmp_path / "x.mp4")])
    message = _error(capsys, ["generate", str(run), str(clip), "--out",
                              str(tmp_path / "x.mp4"), "--backend", "triton"])
    assert "cuda" in message and "incompatible" not in message  # the checkpoint is fine
    assert not (tmp_path / "x.mp4").exists()


def test_more_user_mistakes_give_one_line(clip, tmp_path, capsys):
    """Bad numbers, devices, paths and checkpoints: one line naming the flag or file,
    exit status 2, before any long work."""
    run = tmp_path / "run"
    assert main(["train", str(clip), "--out", str(run), "--steps", "2", *TINY]) == 0
    capsys.readouterr()
    out = str(tmp_path / "x.mp4")
    for flag, value in (("--fps", "inf"), ("--fps", "nan"), ("--l1", "nan"), ("--seed", "-1"),
                        ("--device", "banana"), ("--validate-every", "-1"),
                        ("--features", "bogus")):
        assert flag in _error(capsys, ["train", str(clip), "--out", str(tmp_path / "bad"),
                                       *TINY, flag, value]), (flag, value)
    assert not (tmp_path / "bad").exists()
    assert "--device 'banana'" in _error(capsys, ["generate", str(run), str(clip), "--out",
                                                  out, "--device", "banana"])
    if not torch.cuda.is_available():
        assert "no CUDA device" in _error(capsys, ["evaluate", str(run), "--device", "cuda"])
    # The device is checked before the metric networks load (not blamed on their file).
    assert "--device 'banana'" in _error(capsys, ["evaluate", str(run), "--inception",
                                                  str(tmp_path / "none.pt"), "--device",
                                                  "banana"])
    assert "is a directory" in _error(capsys, ["train", str(tmp_path), "--out",
                                               str(tmp_path / "r7"), *TINY])
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert "is a file" in _error(capsys, ["train", str(clip), "--out", str(a_file), *TINY])
    assert "is a directory" in _error(capsys, ["generate", str(run), str(clip), "--out",
                                               str(tmp_path)])
    sound = tmp_path / "sound.mp4"
    sound.write_bytes(clip.read_bytes())
    assert "input sound file" in _error(capsys, ["generate", str(run), str(sound), "--out",
                                                 str(sound)])
    assert "--video" in _error(capsys, ["evaluate", str(run), "--video",
                                        str(tmp_path / "none.mp4")])
    assert "--json" in _error(capsys, ["evaluate", str(run), "--json",
                                       str(tmp_path / "nodir" / "m.json")])
    assert "--seconds" in _error(capsys, ["demo", "--out", str(tmp_path / "demo"),
                                          "--seconds", "0"])

    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    assert "an empty file" in _error(capsys, ["generate", str(empty), str(clip), "--out", out])
    saved = torch.load(run / "checkpoint.pt", weights_only=True)
    del saved["config"]["data"]["seq_len"]
    torch.save(saved, tmp_path / "incomplete.pt")
    assert "lacks seq_len" in _error(capsys, ["generate", str(tmp_path / "incomplete.pt"),
                                              str(clip), "--out", out])

    assert "already at step 2" in _error(capsys, ["train", str(clip), "--out", str(run),
                                                  "--resume", "--steps", "1"])
    # A resumed run refuses another clip.
    other = tmp_path / "other.mp4"
    write_video(other, np.full((60, 24, 24, 3), 128, np.uint8), fps=30,
                audio=tone(2.0, 44100, freq=500, channels=2))
    assert "not the clip this run trains on" in _error(
        capsys, ["train", str(other), "--out", str(run), "--resume", "--steps", "2"])

    # A run that failed before its first checkpoint leaves only the clip cache: the
    # same command with good options then runs, without --force.
    short = tmp_path / "short"
    assert "too short" in _error(capsys, ["train", str(clip), "--out", str(short), *TINY,
                                          "--frames", "64"])
    assert os.listdir(short) == ["cache"]
    assert main(["train", str(clip), "--out", str(short), "--steps", "1", *TINY]) == 0


def test_outputs_clips_and_flags_found_by_probing(clip, tmp_path, capsys, monkeypatch):
    """Special output paths, a clip edited in place under a run, a --batch the clip
    cannot fill, an absurd --fps, and sound too short for one frame at the run's rate."""
    run = tmp_path / "run"
    assert main(["train", str(clip), "--out", str(run), "--steps", "1", *TINY]) == 0
    capsys.readouterr()
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    assert "not a regular file" in _error(capsys, ["generate", str(run), str(clip), "--out",
                                                   str(fifo)])
    assert fifo.is_fifo()
    # A symbolic link: the file it points to is replaced, the link stays; a user's own
    # file named like a partial output is left alone.
    target, link = tmp_path / "target.mp4", tmp_path / "link.mp4"
    target.write_bytes(b"old")
    link.symlink_to(target)
    own = tmp_path / "target.mp4.part.mp4"
    own.write_bytes(b"mine")
    assert main(["generate", str(run), str(clip), "--out", str(link), "--no-progress"]) == 0
    assert link.is_symlink() and target.stat().st_size > 1000
    assert own.read_bytes() == b"mine"
    capsys.readouterr()

    assert "distinct windows" in _error(capsys, ["train", str(clip), "--out",
                                                 str(tmp_path / "b"), *TINY, "--batch", "1000"])
    assert "at most 1000" in _error(capsys, ["train", str(clip), "--out", str(tmp_path / "f"),
                                             *TINY, "--fps", "1e6"])
    from s2v.data import ClipOptions, _check_decoded_size
    from s2v.media import MediaError
    with monkeypatch.context() as m:  # a machine with 1 MiB: 10 s at 128 px cannot fit
        real = os.sysconf
        m.setattr(os, "sysconf", lambda name: 256 if name == "SC_PHYS_PAGES" else real(name))
        with pytest.raises(MediaError, match="half of this machine's memory"):
            _check_decoded_size("clip.mp4", 10.0, ClipOptions(size=128, fps=20))
    assert "at least 1" in _error(capsys, ["train", str(clip), "--out", str(tmp_path / "c"),
                                           *TINY, "--crop", "0", "0", "0", "10"])
    assert "--frames: expected an even number" in _error(
        capsys, ["train", str(clip), "--out", str(tmp_path / "t"), *TINY, "--frames", "3"])
    assert "--seed" in _error(capsys, ["generate", str(run), str(clip), "--out",
                                       str(tmp_path / "x.mp4"), "--seed", "9" * 20])

    # The clip's bytes change under the run: resume refuses (the run recorded them).
    edited = tmp_path / "edited.mp4"
    edited.write_bytes(clip.read_bytes())
    run2 = tmp_path / "run2"
    assert main(["train", str(edited), "--out", str(run2), "--steps", "1", *TINY]) == 0
    write_video(edited, np.full((60, 24, 24, 3), 90, np.uint8), fps=30,
                audio=tone(2.0, 44100, freq=700, channels=2))
    capsys.readouterr()
    assert "its content differs" in _error(capsys, ["train", "--out", str(run2), "--resume",
                                                    "--steps", "2"])

    # 0.1 s of sound drives no frame at 2 fps: the message says so, not the writer.
    slow = tmp_path / "slow"
    assert main(["train", str(clip), "--out", str(slow), "--steps", "1", *TINY,
                 "--fps", "2"]) == 0
    blip = tmp_path / "blip.mp4"
    write_video(blip, np.zeros((3, 16, 16, 3), np.uint8), fps=30,
                audio=tone(0.1, 44100, freq=440, channels=2))
    capsys.readouterr()
    assert "too short to drive even one frame" in _error(
        capsys, ["generate", str(slow), str(blip), "--out", str(tmp_path / "s.mp4"),
                 "--no-progress"])


def test_doctor_lists_backends(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "dilated_gru" in out and "eager   available" in out
    if not torch.cuda.is_available():  # GPU backends are never "available" without a GPU
        assert "triton  available" not in out and "cuda    available" not in out


def test_two_rank_gloo_run_keeps_ranks_in_sync(clip, tmp_path):
    """torchrun with 2 CPU processes: rank 0 writes, gradients are averaged so both
    ranks end with identical weights."""
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", "29517", "-m", "s2v", "train",
           str(clip), "--out", str(run), "--steps", "2", "--checkpoint-every", "2",
           "--batch", "2", *TINY]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    end = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    assert end["ranks"] == 2 and end["ranks_in_sync"] is True
    assert ckpt.load(run)["step"] == 2


def test_force_keeps_the_old_run_until_the_new_one_can_start(clip, tmp_path, capsys):
    """--force never costs a good run for a bad new input, and never deletes files
    that are not a run's."""
    run = tmp_path / "run"
    assert main(["train", str(clip), "--out", str(run), "--steps", "1", *TINY]) == 0
    before = (run / "checkpoint.pt").read_bytes()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(os.urandom(2000))
    assert "not a readable video" in _error(capsys, ["train", str(broken), "--out", str(run),
                                                     "--force", *TINY])
    assert "--channels-base" in _error(capsys, ["train", str(clip), "--out", str(run),
                                                "--force", *TINY, "--channels-base", "3"])
    assert (run / "checkpoint.pt").read_bytes() == before
    assert (run / "log.jsonl").is_file()

    docs = tmp_path / "docs"
    (docs / "photos").mkdir(parents=True)
    (docs / "thesis.txt").write_text("years of work")
    assert "not an s2v run" in _error(capsys, ["train", str(clip), "--out", str(docs),
                                               "--force", *TINY])
    assert (docs / "thesis.txt").read_text() == "years of work" and (docs / "photos").is_dir()
    music = tmp_path / "music"
    (music / "samples").mkdir(parents=True)
    (music / "samples" / "kick.wav").write_text("drum")  # a folder name a run also uses
    assert "not an s2v run" in _error(capsys, ["train", str(clip), "--out", str(music),
                                               "--force", *TINY])
    assert (music / "samples" / "kick.wav").read_text() == "drum"

    assert main(["train", str(clip), "--out", str(run), "--force", "--steps", "1", "--seed",
                 "3", *TINY]) == 0
    assert torch.load(run / "checkpoint.pt", weights_only=True)["config"]["train"]["seed"] == 3


def test_resume_without_video_and_colons_in_file_names(clip, tmp_path, capsys, monkeypatch):
    """`train --out RUN --resume` needs no VIDEO; names with a colon are files, not
    FFmpeg protocols; `generate` reports the frames the file holds."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "take1:final.mp4").write_bytes(clip.read_bytes())
    assert main(["train", "take1:final.mp4", "--out", "run", "--steps", "1", *TINY]) == 0
    assert "only --resume" in _error(capsys, ["train", "--out", "run", *TINY])
    assert main(["train", "--out", "run", "--resume", "--steps", "2", "--no-progress"]) == 0
    assert torch.load("run/checkpoint.pt", weights_only=True)["step"] == 2
    capsys.readouterr()
    assert main(["generate", "run", "take1:final.mp4", "--out", "song:remix.mp4",
                 "--no-progress"]) == 0
    from s2v.media import read_frames
    written = len(read_frames("song:remix.mp4", 20, 16))
    assert f": {written} frames" in capsys.readouterr().out


def test_damaged_clip_cache_is_rebuilt(clip, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(clip), "--out", str(run), "--steps", "1", *TINY]) == 0
    (entry,) = (run / "cache").iterdir()
    entry.write_bytes(entry.read_bytes()[:5000])  # a partial copy
    with pytest.warns(UserWarning, match="unreadable decoded-clip cache"):
        assert main(["train", str(clip), "--out", str(run), "--resume", "--steps", "2"]) == 0
    assert torch.load(entry, weights_only=True)["frames"].shape[0] > 0


def test_full_disk_while_caching_the_clip_is_one_line(clip, tmp_path, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")
    monkeypatch.setattr(ckpt.torch, "save", full)
    run = tmp_path / "run"
    message = _error(capsys, ["train", str(clip), "--out", str(run), "--steps", "1", *TINY])
    assert "could not write the decoded-clip cache" in message
    assert [p.name for p in (run / "cache").iterdir()] == []  # no temporary file left


def test_sigterm_while_generating_unwinds():
    from s2v.generation import Terminated, _sigterm_unwinds
    with pytest.raises(Terminated):
        with _sigterm_unwinds():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)


def test_python_api_takes_numpy_scalars_and_equal_resume_options(clip, tmp_path):
    """Options given as numpy scalars, a device object or a crop list are stored as
    plain values, so the checkpoint loads with weights_only=True; resuming with the
    same values (as another type) is accepted; a finished run is not mislabelled."""
    import s2v

    run = tmp_path / "run"
    options = {**TINY_API, "size": np.int64(16), "samples": np.bool_(False)}
    summary = s2v.train(clip, run, **options, steps=np.int64(1), fps=np.float64(20),
                        minutes=1e-6, device=torch.device("cpu"),
                        crop=[np.int64(0), 0, 24, 24])
    assert summary["step"] == 1 and summary["stopped"] is None
    saved = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert saved["config"]["train"]["crop"] in ([0, 0, 24, 24], (0, 0, 24, 24))
    s2v.train(None, run, resume=True, steps=2, crop=[0, 0, 24, 24], device="cpu",
              progress=False)
    with pytest.raises(TypeError, match="progress"):
        s2v.train(None, run, resume=True, steps=3, progress="no")
    out = tmp_path / "g.mp4"
    assert s2v.generate(run, clip, out, seed=np.int64(1), progress=False)["frames"] > 0
    with pytest.raises(TypeError, match="seed"):
        s2v.generate(run, clip, out, seed="1", progress=False)


def test_outputs_never_replace_the_commands_inputs(clip, tmp_path, capsys):
    """An output path that is the checkpoint, the sound or the evaluated video is
    refused before any work (the file stays intact); an empty path is one line too."""
    run = tmp_path / "run"
    assert main(["train", str(clip), "--out", str(run), "--steps", "1", *TINY]) == 0
    capsys.readouterr()
    checkpoint = run / "checkpoint.pt"
    before = checkpoint.read_bytes()
    assert "is the checkpoint" in _error(capsys, ["generate", str(run), str(clip), "--out",
                                                  str(checkpoint)])
    assert "is the checkpoint" in _error(capsys, ["evaluate", str(run), "--json",
                                                  str(checkpoint)])
    video = tmp_path / "video.mp4"
    video.write_bytes(clip.read_bytes())
    assert "is the video being evaluated" in _error(
        capsys, ["evaluate", str(run), "--video", str(video), "--json", str(video)])
    assert checkpoint.read_bytes() == before and video.read_bytes() == clip.read_bytes()
    assert "--out: the path is empty" in _error(capsys, ["generate", str(run), str(clip),
                                                         "--out", ""])
    assert "--out: the path is empty" in _error(capsys, ["train", str(clip), "--out", "",
                                                         *TINY])
    assert "--json: the path is empty" in _error(capsys, ["evaluate", str(run), "--json", ""])
    assert "is a directory" in _error(capsys, ["evaluate", str(run), "--inception",
                                               str(tmp_path)])
    # 0.06 s of sound: the first frame's 0.085 s analysis window (centred at 0) is
    # incomplete; the message gives the real minimum, not half a frame period.
    blip = tmp_path / "blip.wav"
    write_audio(blip, tone(0.06, 64000), 64000)
    message = _error(capsys, ["generate", str(run), str(blip), "--out",
                              str(tmp_path / "b.mp4"), "--no-progress"])
    assert "too short to drive even one frame" in message and "at least 0.070 s" in message


def test_damaged_checkpoint_settings_and_weights_name_the_file(clip, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(clip), "--out", str(run), "--steps", "1", *TINY]) == 0
    capsys.readouterr()
    saved = torch.load(run / "checkpoint.pt", weights_only=True)
    out = str(tmp_path / "x.mp4")
    for name, edit, words in (
            ("fps0.pt", lambda c: c["config"]["data"].update(fps=0.0), "positive frame rate"),
            ("size17.pt", lambda c: c["config"]["generator"].update(output_size=17),
             "power of two"),
            ("nan.pt", lambda c: next(iter(c["generator"].values())).fill_(float("nan")),
             "non-finite weights")):
        copy = {k: v for k, v in saved.items()}
        copy["config"] = {k: dict(v) if isinstance(v, dict) else v
                          for k, v in saved["config"].items()}
        copy["generator"] = {k: v.clone() for k, v in saved["generator"].items()}
        edit(copy)
        torch.save(copy, tmp_path / name)
        message = _error(capsys, ["generate", str(tmp_path / name), str(clip), "--out", out])
        assert name in message and words in message, message
    assert not os.path.exists(out)


def test_long_output_names_and_api_path_types(clip, tmp_path, capsys):
    """An output name near the file system's 255-byte limit works (the hidden temporary
    name beside it is shortened); the API takes str, bytes and PathLike paths and names
    the argument when given anything else."""
    import s2v

    run = tmp_path / "run"
    s2v.train(os.fsencode(clip), run, steps=1, **TINY_API)  # bytes and a Path
    long_out = tmp_path / ("b" * 236 + ".mp4")  # 240 bytes
    assert main(["generate", str(run), str(clip), "--out", str(long_out), "--no-progress"]) == 0
    long_json = tmp_path / ("j" * 245 + ".json")
    assert main(["evaluate", str(run), "--json", str(long_json)]) == 0
    assert long_out.stat().st_size > 1000 and json.loads(long_json.read_text())["frames"] > 0
    assert not [p.name for p in tmp_path.iterdir() if ".part" in p.name]
    with pytest.raises(TypeError, match="audio: expected a path"):
        s2v.generate(run, 42, tmp_path / "x.mp4")
    with pytest.raises(TypeError, match="checkpoint: expected a path"):
        s2v.load(None)
    with pytest.raises(TypeError, match="out: expected a path"):
        s2v.train(clip, 3.5, steps=1, **TINY_API)


def test_evaluate_warns_when_few_frames_are_scored(clip, tmp_path):
    import s2v

    run = tmp_path / "run"
    s2v.train(clip, run, steps=1, **TINY_API)
    short = tmp_path / "short.mp4"
    write_video(short, np.zeros((30, 24, 24, 3), np.uint8), fps=30,
                audio=tone(1.0, 44100, freq=300, channels=2))
    with pytest.warns(UserWarning, match=r"only \d held-out frames to score"):
        result = s2v.evaluate(run, video=short)
    assert result["frames"] < 10
