"""Pretrained Hugging Face generators as the text task's decoder, on tiny random models saved into a temp directory:
a VisionEncoderDecoder captioner and a BLIP question answerer. Zero-shot (`epochs: 0`) predictions equal the model's
own `generate` on its processor's inputs; fine-tuned models reload from the model directory alone."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

import polymodal as pm
from polymodal.errors import PolymodalError

from ..conftest import caption_rows

WORDS = "a red green blue circle square triangle what colour is the shape".split()


def word_tokenizer(words: list[str]):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + sorted(words))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                      special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", bos_token="[CLS]", eos_token="[SEP]")


def tiny_captioner(out: Path) -> Path:
    from transformers import (
        BertConfig,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessorPil,
    )

    torch.manual_seed(0)
    tok = word_tokenizer(WORDS)
    enc = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32,
                    patch_size=8)
    dec = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, is_decoder=True, add_cross_attention=True)
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = 2, 0, 3
    model = VisionEncoderDecoderModel(cfg)
    for key, value in (("decoder_start_token_id", 2), ("pad_token_id", 0), ("eos_token_id", 3)):
        setattr(model.generation_config, key, value)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(out)
    return out


def tiny_blip_vqa(out: Path) -> Path:
    from transformers import (
        BlipConfig,
        BlipForQuestionAnswering,
        BlipImageProcessorPil,
        BlipTextConfig,
        BlipVisionConfig,
    )

    torch.manual_seed(0)
    tok = word_tokenizer(WORDS)
    text = BlipTextConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=64, encoder_hidden_size=32, bos_token_id=2, sep_token_id=3, pad_token_id=0)
    vision = BlipVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                              image_size=32, patch_size=8)
    config = BlipConfig(text_config=text.to_dict(), vision_config=vision.to_dict())
    BlipForQuestionAnswering(config).save_pretrained(out)
    tok.save_pretrained(out)
    BlipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf-shapes")
    rows = caption_rows(d, 60, seed=1) + caption_rows(d, 16, seed=2)
    for r in rows:
        r["image"] = str(d / r["image"])
        r["question"] = "what colour is the shape"
        r["answer"] = r["caption"].split()[1]
    return rows[:60], rows[60:]


def reference_generate(model_dir: Path, rows: list[dict], question: bool = False) -> list[str]:
    """What the Hugging Face model itself writes for the rows, fed by its own processor and tokenizer."""
    import transformers
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

    cls = getattr(transformers, AutoConfig.from_pretrained(model_dir).architectures[0])
    model = cls.from_pretrained(model_dir).eval()
    tok, proc = AutoTokenizer.from_pretrained(model_dir), AutoImageProcessor.from_pretrained(model_dir)
    pixels = proc([Image.open(r["image"]).convert("RGB") for r in rows], return_tensors="pt").pixel_values
    extra = dict(tok([r["question"] for r in rows], return_tensors="pt")) if question else {}
    with torch.no_grad():
        ids = model.generate(pixel_values=pixels, **extra, max_new_tokens=10, num_beams=1, do_sample=False)
    return [tok.decode(i, skip_special_tokens=True).strip() for i in ids]


def recipe(model_dir: Path, inputs: list[str], target: str, epochs: int) -> dict:
    return {"inputs": [{"name": n, "modality": "image" if n == "image" else "text"} for n in inputs],
            "target": {"column": target, "task": "text", "options": {"model": str(model_dir), "max_length": 10}},
            "training": {"epochs": epochs, "batch_size": 16, "lr": 1e-3, "progress": False, "seed": 0}}


def test_captioner_zero_shot_equals_its_own_generate(shapes, tmp_path):
    train, test = shapes
    source = tiny_captioner(tmp_path / "ved")
    model = pm.fit(recipe(source, ["image"], "caption", 0), train=train, test=test, out=tmp_path / "m")
    assert model.metrics["training"]["epochs"] == 0
    ours = [p["text"] for p in model.predict(test)]
    assert ours == reference_generate(source, test)
    assert set(model.metrics["test"]) >= {"wer", "cer", "bleu", "rouge_l", "cider", "exact_match"}


def test_fine_tuned_captioner_reloads_without_its_source(shapes, tmp_path):
    train, test = shapes
    source = tiny_captioner(tmp_path / "ved")
    model = pm.fit(recipe(source, ["image"], "caption", 8), train=train, test=test, out=tmp_path / "m")
    before = [p["text"] for p in model.predict(test)]
    assert model.metrics["test"]["wer"] < 1.0  # it learnt something of the captions
    shutil.rmtree(source)  # the model directory keeps the generator's config, tokenizer and processor
    assert (tmp_path / "m" / "text_generator" / "tokenizer.json").is_file()
    loaded = pm.load(tmp_path / "m")
    assert [p["text"] for p in loaded.predict(test)] == before
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["task"]["state"]["unit"] == "tokenizer"


def test_visual_question_answering_zero_shot_and_missing_input(shapes, tmp_path):
    train, test = shapes
    source = tiny_blip_vqa(tmp_path / "blip")
    model = pm.fit(recipe(source, ["image", "question"], "answer", 0), train=train, test=test, out=tmp_path / "m")
    assert [p["text"] for p in model.predict(test)] == reference_generate(source, test, question=True)
    with pytest.raises(PolymodalError, match="has no 'question'"):
        model.predict({"image": test[0]["image"]})


CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }} : {% for c in m['content'] %}{% if c['type'] == 'image' %}"
                 "<image> {% else %}{{ c['text'] }} {% endif %}{% endfor %}{% endfor %}"
                 "{% if add_generation_prompt %}assistant :{% endif %}")


def tiny_assistant(out: Path) -> Path:
    """A LLaVA-style assistant: a CLIP vision tower, a projector and a Llama decoder that reads the image's 16 patch
    tokens in its prompt; a processor with a chat template (what a LLaVA checkpoint ships, at toy size)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    torch.manual_seed(0)
    words = sorted(set(WORDS + "user assistant : describe image .".split()))
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<s>", "</s>", "<image>"] + words)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    tk.decoder = decoders.WordPiece()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                  eos_token="</s>", extra_special_tokens={"image_token": "<image>"})
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=8)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128, bos_token_id=2,
                       eos_token_id=3, pad_token_id=0)
    model = LlavaForConditionalGeneration(LlavaConfig(vision_config=vision, text_config=text, image_token_index=4,
                                                      image_seq_length=16, vision_feature_layer=-1))
    for key, value in (("pad_token_id", 0), ("eos_token_id", 3), ("bos_token_id", 2)):
        setattr(model.generation_config, key, value)
    model.save_pretrained(out)
    LlavaProcessor(image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32},
                                                         crop_size={"height": 32, "width": 32}),
                   tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
                   num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE).save_pretrained(out)
    return out


def assistant_reference(model_dir: Path, rows: list[dict], request=lambda r: r["question"]) -> list[str]:
    """What the assistant itself writes for the rows: its processor on the pictures and chat-templated prompts."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(model_dir).eval()
    proc = AutoProcessor.from_pretrained(model_dir)
    proc.tokenizer.padding_side = "left"
    prompts = [proc.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                                                      {"type": "text", "text": request(r)}]}],
                                        add_generation_prompt=True) for r in rows]
    inputs = proc(images=[Image.open(r["image"]).convert("RGB") for r in rows], text=prompts, padding=True,
                  return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(**inputs, max_new_tokens=10, num_beams=1, do_sample=False)
    return [proc.tokenizer.decode(i, skip_special_tokens=True).strip() for i in ids[:, inputs.input_ids.shape[1]:]]


def test_assistant_answers_zero_shot_as_it_does_itself(shapes, tmp_path):
    """A LLaVA-style model from a local directory answers the question about each image: polymodal's predictions
    equal the model's own `generate` on its processor's inputs (the image's tokens in the chat-templated prompt)."""
    train, test = shapes
    source = tiny_assistant(tmp_path / "llava")
    model = pm.fit(recipe(source, ["image", "question"], "answer", 0), train=train, test=test, out=tmp_path / "m")
    ours = [p["text"] for p in model.predict(test)]
    assert ours == assistant_reference(source, test)
    assert any(ours)  # the random model writes words, so the comparison compares something
    assert set(model.metrics["test"]) >= {"wer", "cer", "exact_match", "bleu"}
    rec = recipe(source, ["image", "question"], "answer", 0)
    rec["target"]["options"]["prompt"] = "{text} ?"
    again = pm.fit(rec, train=train, test=test, out=tmp_path / "m2")
    assert [p["text"] for p in again.predict(test)] == assistant_reference(source, test,
                                                                           lambda r: r["question"] + " ?")


def test_assistant_learns_to_caption_and_reloads_without_its_source(shapes, tmp_path):
    """Fine-tuned on captions (no text input: the default request), the assistant learns them; the model directory
    keeps its processor and chat template, so it reloads with the source gone."""
    train, test = shapes
    source = tiny_assistant(tmp_path / "llava")
    rec = recipe(source, ["image"], "caption", 12)
    rec["training"]["lr"] = 3e-3
    model = pm.fit(rec, train=train, test=test, out=tmp_path / "m")
    assert model.metrics["test"]["wer"] < 0.5  # "a <colour> <shape>": the article and most words right
    before = [p["text"] for p in model.predict(test)]
    shutil.rmtree(source)
    assert (tmp_path / "m" / "text_generator" / "chat_template.jinja").is_file()
    assert [p["text"] for p in pm.load(tmp_path / "m").predict(test)] == before
    with pytest.raises(Exception, match="prompt"):
        bad = recipe(tiny_captioner(tmp_path / "ved"), ["image"], "caption", 0)
        bad["target"]["options"]["prompt"] = "{text}"
        pm.fit(bad, train=train, test=test, out=tmp_path / "bad")


def tiny_whisper(out: Path) -> Path:
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    torch.manual_seed(0)
    tok = word_tokenizer(["a", "b", "c", "d"])
    cfg = WhisperConfig(vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
                        max_target_positions=64, pad_token_id=0, bos_token_id=2, eos_token_id=3,
                        decoder_start_token_id=2)
    model = WhisperForConditionalGeneration(cfg)
    for key, value in (("decoder_start_token_id", 2), ("pad_token_id", 0), ("eos_token_id", 3)):
        setattr(model.generation_config, key, value)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(out)
    return out


@pytest.mark.slow  # a minute on 2 cores: make test-slow
def test_whisper_transcriber_fine_tunes_on_audio_and_reloads(tmp_path):
    """The audio path: waveforms at the feature extractor's rate become Whisper's log-mel features; a few epochs
    teach the tiny random model to write a sentence of the training text."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        t = np.arange(16000) / 16000
        wave = (0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + rng.normal(0, 0.01, t.size)).astype(np.float32)
        sf.write(tmp_path / f"{i}.wav", wave, 16000)
        rows.append({"audio": str(tmp_path / f"{i}.wav"), "text": "a b" if i % 2 else "c d"})
    source = tiny_whisper(tmp_path / "whisper")
    rec = {"inputs": [{"name": "audio", "modality": "audio"}],
           "target": {"column": "text", "task": "text", "options": {"model": str(source), "max_length": 6}},
           "training": {"epochs": 25, "batch_size": 4, "lr": 3e-3, "patience": 30, "progress": False}}
    model = pm.fit(rec, train=rows[:8], test=rows[8:], out=tmp_path / "m")
    assert model.parts.recipe.inputs[0].options["features"] == "waveform"
    assert model.metrics["test"]["wer"] <= 0.5  # it writes sentences of the training text
    preds = [p["text"] for p in model.predict(rows[8:])]
    assert all(p in ("a b", "c d") for p in preds)
    assert [p["text"] for p in pm.load(tmp_path / "m").predict(rows[8:])] == preds
