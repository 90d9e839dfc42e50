"""The audio track of a video file as an audio input: one mp4 column read twice, as `voice=clip:audio` and
`frames=clip:video` (issue 14's "the audio track of a video file can be an audio input")."""
from __future__ import annotations

import json

import numpy as np

import polymodal as pm
from polymodal.modalities.audio import AudioConfig, AudioModality
from polymodal.modalities.video import VideoConfig, VideoModality
from tests.test_hostile import cli


def write_clip(path, freq: float, colour: tuple[int, int, int], rate: int = 8000) -> None:
    import av

    with av.open(str(path), "w") as c:
        v = c.add_stream("mpeg4", rate=10)
        v.width = v.height = 32
        v.pix_fmt = "yuv420p"
        a = c.add_stream("aac", rate=rate)
        for _ in range(5):
            for p in v.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), colour, np.uint8), format="rgb24")):
                c.mux(p)
        wave = (0.5 * np.sin(2 * np.pi * freq * np.arange(rate // 2) / rate)).astype(np.float32)[None]
        for s in range(0, wave.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, s:s + 1024]), format="fltp",
                                               layout="mono")
            frame.sample_rate, frame.pts = rate, s
            for p in a.encode(frame):
                c.mux(p)
        for stream in (v, a):
            for p in stream.encode():
                c.mux(p)


def test_one_mp4_column_as_audio_and_as_video(tmp_path):
    rows = []
    for i in range(12):
        high = i % 2 == 0
        write_clip(tmp_path / f"clip{i}.mp4", 1200.0 if high else 300.0, (30, 30, 220) if high else (220, 30, 30))
        rows.append({"clip": f"clip{i}.mp4", "label": "high" if high else "low"})
    wave = AudioModality(AudioConfig(sample_rate=8000)).decode("clip0.mp4", tmp_path)
    peak = np.argmax(np.abs(np.fft.rfft(wave))) * 8000 / len(wave)
    assert abs(peak - 1200) < 30 and 0.4 < len(wave) / 8000 < 0.7  # the clip's tone, at the input's rate
    frames = VideoModality(VideoConfig(n_frames=4, size=16)).decode("clip0.mp4", tmp_path)
    assert frames.shape == (4, 3, 16, 16) and int(frames[0, 2].float().mean()) > 150  # blue
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _, err = cli("fit", "--train", tmp_path / "train.jsonl", "--input", "voice=clip:audio", "--input",
                       "frames=clip:video", "--target", "label", "--epochs", "1", "--quiet", "--out", tmp_path / "m")
    assert code == 0, err
    model = pm.load(tmp_path / "m")
    assert model.inputs == {"voice": "audio", "frames": "video"}
    assert model.info()["inputs"]["voice"]["column"] == model.info()["inputs"]["frames"]["column"] == "clip"
    assert model.predict({"clip": str(tmp_path / "clip3.mp4")})["label"] in ("high", "low")
