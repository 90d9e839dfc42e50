"""Each reader on good and corrupt values; collate shapes and masks."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from polymodal.errors import BadInput
from polymodal.modalities import MODALITIES, infer_modality
from tests.conftest import draw_shape, write_tone, write_video


def make(kind: str, **options):
    cls = MODALITIES.get(kind)
    return cls(cls.Config(**options))


def test_image_reads_path_bytes_array_and_resizes(tmp_path):
    path = draw_shape(tmp_path / "x.png", "circle", "red", 40)
    m = make("image", size=24)
    a = m.read("x.png", tmp_path)
    b = m.read(path.read_bytes(), tmp_path)
    c = m.read(np.asarray(Image.open(path)), tmp_path)
    assert a.shape == (3, 24, 24) and a.dtype == torch.uint8
    assert torch.equal(a, b) and torch.equal(a, c)
    assert a[0].float().mean() > a[2].float().mean()  # red shape: more red than blue
    grey = make("image", size=(10, 20), channels=1, resize="pad").read(path, tmp_path)
    assert grey.shape == (1, 10, 20)
    data, mask = m.collate([a, b])
    assert data.shape == (2, 3, 24, 24) and mask is None and 0 <= float(data.min()) and float(data.max()) <= 1


def test_image_corrupt_and_missing_files_name_the_problem(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    m = make("image")
    with pytest.raises(BadInput, match="cannot read image"):
        m.read("bad.png", tmp_path)
    with pytest.raises(BadInput, match="not found.*nope.png"):
        m.read("nope.png", tmp_path)


def test_text_learns_vocabulary_and_pads(tmp_path):
    m = make("text", max_length=4)
    m.fit(["the red circle", "a blue square", "the blue circle"])
    assert m.tokens("The RED thing") == ["[CLS]", "the", "red", "[UNK]"]
    ids, mask = m.collate(["red", "the blue circle and more words"])
    assert ids.shape == (2, 4) and mask.tolist() == [[True, True, False, False], [True] * 4]
    (tmp_path / "t.txt").write_text("from a file")
    assert m.read("t.txt", tmp_path) == "from a file"
    assert m.read("plain words.txt", tmp_path) == "plain words.txt"  # not a file: the text itself


def test_audio_wav_resampled_to_logmel(tmp_path):
    write_tone(tmp_path / "a.wav", 440, seconds=1.0, sr=8000)
    m = make("audio", sample_rate=16000, n_mels=32)
    feats = m.read("a.wav", tmp_path)
    assert feats.shape[1] == 32 and 95 <= feats.shape[0] <= 105  # 10 ms hop over 1 s
    short = m.read((np.zeros(800, np.float32) + 0.1, 16000), tmp_path)
    m.fit([feats, short])
    data, mask = m.collate([feats, short])
    assert data.shape[:2] == mask.shape and mask[1].sum() == short.shape[0] and mask[0].all()
    wave = make("audio", sample_rate=8000, features="waveform").read("a.wav", tmp_path)
    assert wave.shape == (8000, 1)


def test_audio_flac_and_compressed_via_pyav(tmp_path):
    t = np.arange(8000) / 8000
    sf.write(tmp_path / "a.flac", (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 8000)
    m = make("audio", sample_rate=8000, n_mels=16)
    assert m.read("a.flac", tmp_path).shape[1] == 16
    import av

    with av.open(str(tmp_path / "a.m4a"), "w") as c:  # AAC through PyAV's own FFmpeg
        s = c.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)[None],
                                           format="fltp", layout="mono")
        frame.sample_rate = 8000
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    feats = m.read("a.m4a", tmp_path)
    assert feats.shape[1] == 16 and feats.shape[0] > 50


def test_audio_corrupt(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"RIFF....garbage")
    with pytest.raises(BadInput, match="cannot decode audio"):
        make("audio").read("bad.wav", tmp_path)


def test_audio_real_speech_from_espeak(tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is installed by `make install`")
    subprocess.run(["espeak-ng", "-w", str(tmp_path / "s.wav"), "seven"], check=True)
    feats = make("audio", n_mels=40).read("s.wav", tmp_path)
    assert feats.shape[1] == 40 and feats.shape[0] > 20
    assert float(feats.max() - feats.min()) > 2  # real speech has dynamic range in the log-mel


def test_video_mp4_and_npy(tmp_path):
    write_video(tmp_path / "v.mp4", "red", frames=10)
    m = make("video", n_frames=4, size=16)
    v = m.read("v.mp4", tmp_path)
    assert v.shape == (4, 3, 16, 16) and v.dtype == torch.uint8
    np.save(tmp_path / "v.npy", np.random.default_rng(0).integers(0, 255, (7, 20, 20, 3), dtype=np.uint8))
    assert m.read("v.npy", tmp_path).shape == (4, 3, 16, 16)
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(BadInput, match="cannot decode video"):
        m.read("bad.mp4", tmp_path)


def test_signal_npy_csv_inline_and_normalisation(tmp_path):
    np.save(tmp_path / "s.npy", np.arange(12, dtype=np.float32).reshape(6, 2))
    (tmp_path / "s.csv").write_text("a,b\n1,2\n3,4\n5,6\n")
    m = make("signal")
    a, b, c = m.read("s.npy", tmp_path), m.read("s.csv", tmp_path), m.read([[1, 2], [3, 4]], tmp_path)
    assert a.shape == (6, 2) and b.shape == (3, 2) and c.shape == (2, 2)
    m.fit([a, b, c])
    data, mask = m.collate([a, c])
    assert data.shape == (2, 16, 2) and mask.sum().item() == 8
    assert abs(float(data[0, :6].mean())) < 1.5
    with pytest.raises(BadInput, match="3 features"):
        m.read([[1, 2, 3]], tmp_path)
    with pytest.raises(BadInput, match="NaN"):
        make("signal").read([1.0, float("nan")], tmp_path)


def test_infer_modality():
    assert infer_modality([None, "a.png"]) == "image"
    assert infer_modality(["x.WAV"]) == "audio"
    assert infer_modality(["clip.mp4"]) == "video"
    assert infer_modality(["s.npy"]) == "signal"
    assert infer_modality(["hello there"]) == "text"
    assert infer_modality([[1.0, 2.0]]) == "signal"


def test_signal_relative_to_subtracts_the_reference_point_at_every_step(tmp_path):
    import numpy as np

    from polymodal.errors import BadInput
    from polymodal.modalities.signal import SignalConfig, SignalModality

    joints = np.arange(2 * 9, dtype=np.float32).reshape(2, 9)  # 2 steps, 3 points of (x, y, z)
    m = SignalModality(SignalConfig(relative_to=[3, 4, 5]))
    out = m.decode(joints.tolist(), tmp_path).numpy()
    assert out.tolist() == [[-3, -3, -3, 0, 0, 0, 3, 3, 3], [-3, -3, -3, 0, 0, 0, 3, 3, 3]]
    with pytest.raises(BadInput, match="not blocks of 2"):
        SignalModality(SignalConfig(relative_to=[0, 1])).decode(joints.tolist(), tmp_path)


def test_signal_deltas_append_each_features_change_and_are_checked_against_the_raw_width(tmp_path):
    import numpy as np

    from polymodal.errors import BadInput
    from polymodal.modalities.signal import SignalConfig, SignalModality

    steps = np.array([[0, 0, 0, 1, 2, 3], [0, 0, 0, 2, 4, 9], [0, 0, 0, 2, 5, 9]], dtype=np.float32)
    m = SignalModality(SignalConfig(relative_to=[0, 1, 2], deltas=True, xyz=True))
    out = m.decode(steps.tolist(), tmp_path)
    assert out.tolist() == [[0, 0, 0, 1, 2, 3, 0, 0, 0, 0, 0, 0], [0, 0, 0, 2, 4, 9, 0, 0, 0, 1, 2, 6],
                            [0, 0, 0, 2, 5, 9, 0, 0, 0, 0, 1, 0]]
    m.fit([out])
    assert m.n_features == 12 and "rotation" in m.corruptions  # 4 triples: positions and their changes
    assert m.decode(steps.tolist(), tmp_path).shape == (3, 12)  # a value has the raw 6 features
    with pytest.raises(BadInput, match="signal has 12 features, the model expects 6"):
        m.decode(out.tolist(), tmp_path)


@pytest.mark.parametrize("rate,mels,n", [(8000, 40, 100), (8000, 40, 12345), (16000, 80, 5000)])
def test_logmel_equals_transformers_spectrogram(rate, mels, n):
    """The batched-FFT log-mel gives transformers' per-frame `spectrogram` numbers (float32 rounding apart)."""
    from transformers.audio_utils import spectrogram, window_function

    from polymodal.modalities.audio import AudioConfig, AudioModality

    m = AudioModality(AudioConfig(sample_rate=rate, n_mels=mels))
    wave = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.3
    ours = m.logmel(wave)
    frame, hop = rate * 25 // 1000, rate * 10 // 1000
    n_fft = 1 << (frame - 1).bit_length()
    padded = wave if wave.size >= n_fft else np.pad(wave, (0, n_fft - wave.size))
    theirs = spectrogram(padded, window_function(frame, "hann", frame_length=n_fft), frame_length=n_fft,
                         hop_length=hop, power=2.0, mel_filters=m._mel, log_mel="log10").T
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    assert np.abs(ours - theirs).max() < 1e-5


def test_video_and_signal_values_as_bytes(tmp_path):
    """What a server receives: a video file's content, a .npy file's content."""
    import io

    from polymodal.modalities.signal import SignalConfig, SignalModality
    from polymodal.modalities.video import VideoConfig, VideoModality

    video = VideoModality(VideoConfig(n_frames=4, size=16))
    path = write_video(tmp_path / "v.mp4", "red")
    assert torch.equal(video.decode(path.read_bytes(), tmp_path), video.decode(str(path), tmp_path))
    with pytest.raises(BadInput, match="cannot decode video bytes"):
        video.decode(b"junk", tmp_path)
    buf = io.BytesIO()
    np.save(buf, np.arange(12, dtype=np.float32).reshape(6, 2))
    signal = SignalModality(SignalConfig())
    assert signal.decode(buf.getvalue(), tmp_path).tolist() == np.arange(12).reshape(6, 2).tolist()
    with pytest.raises(BadInput, match="cannot read signal bytes"):
        signal.decode(b"junk", tmp_path)


def test_an_image_bomb_is_a_bad_input(tmp_path):
    """A PNG whose header claims 10^10 pixels: refused with a message, never decoded."""
    import struct
    import zlib

    from polymodal.modalities.image import to_pil

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    with pytest.raises(BadInput, match="image too large"):
        to_pil(png, tmp_path)
    (tmp_path / "bomb.png").write_bytes(png)
    with pytest.raises(BadInput, match="image too large"):
        to_pil("bomb.png", tmp_path)
