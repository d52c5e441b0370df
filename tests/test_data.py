"""Dataset preparation (cache, split, errors) and the sequence sampler of SPEC §7."""
import numpy as np
import pytest
import torch

from s2v import data
from s2v.data import ClipOptions, SequenceSampler, batch_windows, min_frames, prepare_clip


@pytest.fixture
def clip_file(tmp_path):
    pytest.importorskip("av", reason="PyAV is not installed")
    from tests.media.factory import gray_frame, tone, write_video

    path = tmp_path / "clip.mp4"
    n = 60  # 2 s at 30 fps
    write_video(path, np.stack([gray_frame(i % 30, 48, 64) for i in range(n)]), fps=30,
                audio=tone(2.0, 44100, channels=2))
    return path


def test_prepare_caches_and_splits(clip_file, tmp_path, monkeypatch):
    opts = ClipOptions(size=16, fps=20)
    clip = prepare_clip(clip_file, tmp_path / "run", opts, seq_len=8, progress=False)
    assert clip.frames.dtype == torch.uint8 and clip.frames.shape[1:] == (16, 16, 3)
    assert clip.features.shape == (clip.num_frames, 64)
    assert abs(clip.num_frames - 40) <= 2
    train, val = clip.train(), clip.validation()
    assert train.num_frames == int(0.8 * clip.num_frames)
    assert train.num_frames + val.num_frames == clip.num_frames
    assert torch.equal(val.frames[0], clip.frames[train.num_frames])
    cached = list((tmp_path / "run" / "cache").glob("clip-*.pt"))
    assert len(cached) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cache should have been used")
    monkeypatch.setattr(data, "decode_clip", no_decoding)
    again = prepare_clip(clip_file, tmp_path / "run", opts, seq_len=8, progress=False)
    assert torch.equal(again.frames, clip.frames) and torch.equal(again.features,
                                                                  clip.features)
    with pytest.raises(AssertionError, match="cache"):  # other options, other entry
        prepare_clip(clip_file, tmp_path / "run", ClipOptions(size=8, fps=20), seq_len=8)


def test_too_short_clip_says_how_long_it_must_be(clip_file, tmp_path):
    from s2v.media import MediaError

    with pytest.raises(MediaError, match=r"too short: it gives \d+ frames with sound at 20 "
                       r"fps, .* need 63 frames \(about 3\.17 s of video with sound\)"):
        prepare_clip(clip_file, tmp_path, ClipOptions(size=8, fps=20), seq_len=50,
                     progress=False)
    assert min_frames(50) == 63 and int(63 * 0.8) >= 50


def test_video_without_sound_is_refused(tmp_path):
    pytest.importorskip("av", reason="PyAV is not installed")
    from s2v.media import MediaError
    from tests.media.factory import gray_frame, write_video

    path = tmp_path / "mute.mp4"
    write_video(path, np.stack([gray_frame(i, 16, 16) for i in range(30)]), fps=30)
    with pytest.raises(MediaError, match="mute.mp4: has no audio stream"):
        prepare_clip(path, tmp_path, ClipOptions(size=8), seq_len=4, progress=False)
    with pytest.raises(ValueError, match="fps"):
        prepare_clip(path, tmp_path, ClipOptions(size=8, fps=0), seq_len=4)


def test_sampler_walks_consecutive_windows_and_resets_at_the_end():
    s = SequenceSampler(num_frames=50, seq_len=8, batch=1, seed=3)
    starts, resets = [], []
    for _ in range(20):
        st, rs = s.next()
        starts.append(int(st[0]))
        resets.append(bool(rs[0]))
    assert resets[0]
    for i in range(1, 20):
        if resets[i]:  # a new random offset in [0, T) after running out of frames
            assert starts[i - 1] + 16 > 50 and 0 <= starts[i] < 8
        else:  # consecutive, non-overlapping: the state carries over
            assert starts[i] == starts[i - 1] + 8
        assert starts[i] + 8 <= 50
    assert sum(resets) >= 3


def test_sampler_batch_streams_are_independent_and_spread():
    s = SequenceSampler(num_frames=100, seq_len=10, batch=4, seed=0)
    st, rs = s.next()
    assert rs.all() and len(set(st.tolist())) == 4
    assert st.max() - st.min() >= 50  # spread over the clip
    nxt, rs2 = s.next()
    for b in range(4):
        assert rs2[b] or nxt[b] == st[b] + 10
    state = s.state_dict()
    ahead = [s.next() for _ in range(5)]
    s.load_state_dict(state)
    again = [s.next() for _ in range(5)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
               for a, b in zip(ahead, again))


def test_batch_windows_scale_frames_to_unit_range():
    frames = torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1).expand(20, 2, 2, 3) * 12
    clip = data.Clip(frames.contiguous(), torch.randn(20, 5), ClipOptions(size=2), "x")
    video, feats = batch_windows(clip, torch.tensor([0, 7]), 4)
    assert video.shape == (2, 4, 3, 2, 2) and feats.shape == (2, 4, 5)
    assert video.min() >= -1 and video.max() <= 1
    assert torch.equal(feats[1], clip.features[7:11])
    assert video[1, 0, 0, 0, 0] == pytest.approx(7 * 12 / 127.5 - 1)
